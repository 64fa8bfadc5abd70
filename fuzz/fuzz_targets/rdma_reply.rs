//! Replies of the kernel's RDMA netlink (NLDEV) interface, as the client
//! decodes them: the raw message and attribute walkers, then every client
//! request answered by the fuzz input through a scripted transport.
//!
//! Layout: byte 0 picks the request (low nibble) and whether reply
//! sequence numbers are kept as given (bit 4; otherwise they are rewritten
//! to the request's, so the decoders past the sequence check are reached);
//! byte 1 is the device index the request names; the rest is a list of
//! datagrams, each a little-endian u16 length and that many bytes (a short
//! last one takes what is left).
#![no_main]

use std::fs::File;
use std::sync::OnceLock;

use jobnet_rdma::message::{self, Attrs, ErrorBody};
use jobnet_rdma::{NetnsMode, RdmaClient, RdmaError, ReplayTransport};
use libfuzzer_sys::fuzz_target;

/// Any descriptor will do: the scripted transport never hands it to a kernel.
fn some_fd() -> Option<&'static File> {
    static FD: OnceLock<Option<File>> = OnceLock::new();
    FD.get_or_init(|| File::open("/dev/null").ok()).as_ref()
}

fn datagrams(mut rest: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some((len, tail)) = rest.split_first_chunk::<2>() {
        let len = usize::from(u16::from_le_bytes(*len));
        let (d, next) = tail.split_at(len.min(tail.len()));
        out.push(d.to_vec());
        rest = next;
    }
    out
}

/// Walks everything the decoder exposes, as a caller reading fields would.
fn walk(datagram: &[u8]) {
    for msg in message::messages(datagram).flatten() {
        for attr in msg.attrs().flatten() {
            let _ = (attr.as_u8(), attr.as_u32(), attr.as_u64(), attr.as_str());
            for inner in attr.nested_attrs().flatten() {
                let _ = (inner.as_u32(), inner.as_str());
            }
        }
        for flags in [0, 0x100, 0x200, 0x300] {
            let _ = ErrorBody::parse(msg.payload, flags);
        }
    }
    for attr in Attrs::new(datagram).flatten() {
        let _ = attr.as_str();
    }
}

fuzz_target!(|data: &[u8]| {
    let [op, index, rest @ ..] = data else {
        return;
    };
    let script = datagrams(rest);
    for d in &script {
        walk(d);
    }

    let mut transport = ReplayTransport::new();
    if op & 0x10 != 0 {
        transport = transport.keep_seq();
    }
    for d in script {
        transport.push_reply(d);
    }
    let mut client = RdmaClient::with_transport(transport);
    let index = u32::from(*index);
    let result: Result<(), RdmaError> = match op & 0x0f {
        // Device names are only compared with names read from sysfs, never
        // used as paths, so an empty or odd name is the kernel's business.
        0 => client.devices().map(|d| {
            for dev in d {
                let _ = dev.node_guid.map(|g| g.to_string());
            }
        }),
        1 => client.device(index).map(drop),
        2 => client.device_by_name("mlx5_0").map(drop),
        3 => client.ports(index).map(drop),
        4 => client.system().map(drop),
        5 => client.netns_mode().map(|m| {
            assert_eq!(NetnsMode::from_u8(m.as_u8()), Some(m));
        }),
        6 => client.set_netns_mode(NetnsMode::Exclusive),
        7 => match some_fd() {
            Some(fd) => client.move_to_netns(index, fd),
            None => Ok(()),
        },
        8 => client.rename(index, "rdma0"),
        9 => client.chardev(Some(index), "uverbs").map(|c| {
            // The name becomes a path under /dev/infiniband.
            assert!(
                !c.name.contains('/') && c.name != "..",
                "unsafe chardev name"
            );
            let _ = c.path();
        }),
        10 => client.chardev(None, "rdma_cm").map(drop),
        _ => Ok(()),
    };
    if let Err(e) = result {
        let _ = (e.to_string(), e.is_no_device());
    }
});
