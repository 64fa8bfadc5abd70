//! Addresses, routes and announcements against real kernel objects.

mod common;

use std::{
    net::IpAddr,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::{Duration, Instant},
};

use common::{unique, TestNs};
use ipnet::IpNet;
use jobnet_netlink::{
    announce_addresses, AddressOptions, Link, OperState, Route, RouteFamily, RouteScope,
};

/// How long a test waits for a kernel state before it fails; far beyond
/// what an idle machine needs, so only a real fault runs into it.
const STATE_DEADLINE: Duration = Duration::from_secs(10);

async fn veth_up(t: &TestNs) -> (Link, Link) {
    let (x, y) = (unique("x"), unique("y"));
    t.handle.create_veth(&x, &y, None).await.unwrap();
    let lx = t.handle.link_by_name(&x).await.unwrap();
    let ly = t.handle.link_by_name(&y).await.unwrap();
    t.handle.set_up(lx.index).await.unwrap();
    t.handle.set_up(ly.index).await.unwrap();
    (lx, ly)
}

#[tokio::test]
async fn addresses_v4_v6_add_list_delete() {
    let t = TestNs::new("ad");
    let (l, _) = veth_up(&t).await;
    let v4: IpNet = "10.77.1.5/24".parse().unwrap();
    let v6: IpNet = "fd00:77::5/64".parse().unwrap();
    t.handle.add_address(l.index, v4).await.unwrap();
    t.handle
        .add_address_with(l.index, v6, AddressOptions { nodad: true })
        .await
        .unwrap();
    let addrs = t.handle.addresses(Some(l.index)).await.unwrap();
    let v4a = addrs.iter().find(|a| a.addr == v4).expect("v4 listed");
    let v6a = addrs.iter().find(|a| a.addr == v6).expect("v6 listed");
    assert!(!v6a.tentative, "nodad address must be usable at once");
    assert_eq!(v4a.index, l.index);
    // Addresses of other links are filtered out.
    assert!(addrs.iter().all(|a| a.index == l.index));

    let out = std::process::Command::new("ip")
        .args(["-n", t.name(), "-4", "addr", "show", "dev", &l.name])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("inet 10.77.1.5/24 brd 10.77.1.255"), "{text}");

    assert!(t
        .handle
        .add_address(l.index, v4)
        .await
        .unwrap_err()
        .is_exists());
    t.handle.delete_address(l.index, v4).await.unwrap();
    t.handle.delete_address(l.index, v6).await.unwrap();
    let left = t.handle.addresses(Some(l.index)).await.unwrap();
    assert!(
        !left.iter().any(|a| a.addr == v4 || a.addr == v6),
        "{left:?}"
    );
    let err = t.handle.delete_address(l.index, v4).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

#[tokio::test]
async fn routes_v4_v6_with_metrics_tables_and_scope() {
    let t = TestNs::new("rt");
    let (l, _) = veth_up(&t).await;
    t.handle
        .add_address(l.index, "10.78.0.2/24".parse().unwrap())
        .await
        .unwrap();
    t.handle
        .add_address_with(
            l.index,
            "fd00:78::2/64".parse().unwrap(),
            AddressOptions { nodad: true },
        )
        .await
        .unwrap();

    let via_gw = Route {
        dst: Some("192.168.50.0/24".parse().unwrap()),
        gateway: Some("10.78.0.1".parse().unwrap()),
        oif: Some(l.index),
        mtu: Some(1400),
        advmss: Some(1360),
        priority: Some(77),
        table: Some(1000),
        ..Default::default()
    };
    let default_v4 = Route {
        gateway: Some("10.78.0.1".parse().unwrap()),
        oif: Some(l.index),
        ..Default::default()
    };
    let link_v6 = Route {
        dst: Some("fd00:99::/48".parse().unwrap()),
        oif: Some(l.index),
        priority: Some(5),
        ..Default::default()
    };
    let gw_v6 = Route {
        dst: Some("fd00:98::/48".parse().unwrap()),
        gateway: Some("fd00:78::1".parse().unwrap()),
        oif: Some(l.index),
        mtu: Some(1300),
        ..Default::default()
    };
    for r in [&via_gw, &default_v4, &link_v6, &gw_v6] {
        t.handle.add_route(r).await.unwrap();
    }

    let in_1000 = t.handle.routes(RouteFamily::V4, Some(1000)).await.unwrap();
    let got = in_1000
        .iter()
        .find(|r| r.dst == via_gw.dst)
        .expect("table 1000 route");
    assert_eq!(
        (
            got.gateway,
            got.oif,
            got.mtu,
            got.advmss,
            got.priority,
            got.table,
            got.scope
        ),
        (
            via_gw.gateway,
            Some(l.index),
            Some(1400),
            Some(1360),
            Some(77),
            Some(1000),
            Some(RouteScope::Universe)
        )
    );
    let main4 = t
        .handle
        .routes(RouteFamily::V4, Some(jobnet_netlink::TABLE_MAIN))
        .await
        .unwrap();
    assert!(
        main4
            .iter()
            .any(|r| r.dst.is_none() && r.gateway == default_v4.gateway),
        "{main4:?}"
    );
    // The kernel's own connected route shows up too, with link scope.
    let connected: IpNet = "10.78.0.0/24".parse().unwrap();
    assert!(main4
        .iter()
        .any(|r| r.dst == Some(connected) && r.scope == Some(RouteScope::Link)));

    let main6 = t.handle.routes(RouteFamily::V6, None).await.unwrap();
    let l6 = main6
        .iter()
        .find(|r| r.dst == link_v6.dst)
        .expect("v6 link route");
    assert_eq!((l6.gateway, l6.priority), (None, Some(5)));
    let g6 = main6
        .iter()
        .find(|r| r.dst == gw_v6.dst)
        .expect("v6 gw route");
    assert_eq!((g6.gateway, g6.mtu), (gw_v6.gateway, Some(1300)));

    assert!(t
        .handle
        .add_route(&default_v4)
        .await
        .unwrap_err()
        .is_exists());
    for r in [&via_gw, &default_v4, &link_v6, &gw_v6] {
        t.handle.delete_route(r).await.unwrap();
    }
    assert!(t
        .handle
        .routes(RouteFamily::V4, Some(1000))
        .await
        .unwrap()
        .is_empty());
    let main6 = t.handle.routes(RouteFamily::V6, None).await.unwrap();
    assert!(!main6
        .iter()
        .any(|r| r.dst == link_v6.dst || r.dst == gw_v6.dst));
    assert!(t
        .handle
        .delete_route(&default_v4)
        .await
        .unwrap_err()
        .is_not_found());

    let bad = Route::default();
    assert!(t.handle.add_route(&bad).await.is_err());
    let unreachable = Route {
        gateway: Some("10.200.0.1".parse().unwrap()),
        ..Default::default()
    };
    let err = t.handle.add_route(&unreachable).await.unwrap_err();
    assert!(err.errno().is_some(), "{err}");
}

/// Waits, up to [`STATE_DEADLINE`], until every link of `indexes` in `t` is
/// operationally up. Admin up is not enough: the kernel enables a link's
/// queueing discipline only when it processes the carrier change (later,
/// on a busy machine), and until then it drops every frame sent on it.
async fn wait_oper_up(t: &TestNs, indexes: &[u32]) {
    let deadline = Instant::now() + STATE_DEADLINE;
    loop {
        let mut down = Vec::new();
        for &index in indexes {
            let l = t.handle.link_by_index(index).await.unwrap();
            if l.oper_state != OperState::Up {
                down.push((l.name, l.oper_state));
            }
        }
        if down.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "links not operationally up after {STATE_DEADLINE:?}: {down:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Opens an AF_PACKET socket in `t`'s namespace bound to `ifindex`,
/// receiving every frame.
fn sniffer(t: &TestNs, ifindex: u32) -> OwnedFd {
    t.ns.run(move || {
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2)/bind(2) calls with valid arguments.
        unsafe {
            let fd = libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(proto),
            );
            assert!(fd >= 0);
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = ifindex as i32;
            let rc = libc::bind(
                fd,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(rc, 0);
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 200_000,
            };
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            );
            OwnedFd::from_raw_fd(fd)
        }
    })
    .unwrap()
}

#[tokio::test]
async fn announcements_reach_the_peer() {
    let t = TestNs::new("an");
    let (l, peer) = veth_up(&t).await;
    wait_oper_up(&t, &[l.index, peer.index]).await;
    let sock = sniffer(&t, peer.index);
    let mac = l.mac().unwrap();
    let v4: IpAddr = "10.79.0.9".parse().unwrap();
    let v6: IpAddr = "fd00:79::9".parse().unwrap();

    // Announce again until the peer has seen both, within the deadline: a
    // single frame may still be lost (e.g. to a queue the kernel replaces),
    // and what is under test is that announcements arrive, not that the
    // first one does.
    let (mut saw_arp, mut saw_na) = (false, false);
    let deadline = Instant::now() + STATE_DEADLINE;
    let mut next_send = Instant::now();
    let mut sends = 0;
    let mut buf = [0u8; 2048];
    while !(saw_arp && saw_na) && Instant::now() < deadline {
        if Instant::now() >= next_send {
            announce_addresses(&t.ns, l.index, mac, &[v4, v6]).unwrap();
            sends += 1;
            next_send = Instant::now() + Duration::from_millis(250);
        }
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            continue;
        }
        let f = &buf[..n as usize];
        if f.len() >= 42
            && f[12..14] == [0x08, 0x06]
            && f[28..32] == [10, 79, 0, 9]
            && f[22..28] == mac.0
        {
            saw_arp = true;
        }
        if f.len() >= 78 && f[12..14] == [0x86, 0xdd] && f[54] == 136 {
            let IpAddr::V6(ip6) = v6 else { unreachable!() };
            if f[62..78] == ip6.octets() && f[20] == 58 && f[21] == 255 {
                saw_na = true;
            }
        }
    }
    assert!(
        saw_arp,
        "no gratuitous ARP seen after {sends} announcements"
    );
    assert!(saw_na, "no unsolicited NA seen after {sends} announcements");

    // A down interface makes the send fail, and the error says so.
    t.handle.set_down(l.index).await.unwrap();
    let err = announce_addresses(&t.ns, l.index, mac, &[v4]).unwrap_err();
    assert_eq!(err.errno(), Some(nix::errno::Errno::ENETDOWN), "{err}");
}
