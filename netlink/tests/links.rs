//! Link operations against real kernel objects in throwaway namespaces.

mod common;

use common::{unique, TestNs};
use jobnet_netlink::{
    ErrorKind, Handle, LinkUpdate, MacAddr, NamedNetns, Netns, NetnsError, NetnsGuard,
};

#[test]
fn netns_open_distinguishes_missing_from_not_a_netns() {
    let missing = format!("/run/netns/does-not-exist-{}", unique("m"));
    assert!(matches!(
        Netns::open(&missing),
        Err(NetnsError::NotFound { .. })
    ));

    let file = std::env::temp_dir().join(format!("jobnet-notns-{}", unique("f")));
    std::fs::write(&file, b"").unwrap();
    let res = Netns::open(&file);
    std::fs::remove_file(&file).unwrap();
    assert!(matches!(res, Err(NetnsError::NotNetns { .. })), "{res:?}");

    // An nsfs file of another namespace type is not a network namespace.
    assert!(matches!(
        Netns::open("/proc/self/ns/mnt"),
        Err(NetnsError::NotNetns { .. })
    ));

    let cur = Netns::current().unwrap();
    let again = Netns::open("/proc/self/ns/net").unwrap();
    assert!(cur.same_as(&again).unwrap());
}

#[test]
fn named_netns_create_delete_and_collision() {
    let name = format!("jnt-{}", unique("c"));
    let ns = NamedNetns::create(&name).unwrap();
    let guard = NamedNetns::from_name(&name).unwrap().into_guard();
    assert!(matches!(
        NamedNetns::create(&name),
        Err(NetnsError::AlreadyExists { .. })
    ));
    let opened = ns.open().unwrap();
    assert!(!opened.same_as(&Netns::current().unwrap()).unwrap());
    guard.delete().unwrap();
    assert!(!ns.path().exists());
    assert!(matches!(ns.delete(), Err(NetnsError::NotFound { .. })));
    assert!(matches!(
        NamedNetns::create("a/b"),
        Err(NetnsError::InvalidName { .. })
    ));
    assert!(matches!(
        NamedNetns::create(".."),
        Err(NetnsError::InvalidName { .. })
    ));
}

#[test]
fn netns_guard_deletes_on_panic() {
    let name = format!("jnt-{}", unique("p"));
    let path = std::path::Path::new("/run/netns").join(&name);
    let res = std::panic::catch_unwind(|| {
        let _g = NetnsGuard::create(&name).unwrap();
        panic!("boom");
    });
    assert!(res.is_err());
    assert!(!path.exists());
}

#[test]
fn handle_needs_a_runtime() {
    let err = Handle::new().unwrap_err();
    assert!(matches!(err.kind, ErrorKind::NoRuntime), "{err}");
}

#[tokio::test]
async fn veth_moves_with_rename_in_one_message_and_back() {
    let a = TestNs::new("a");
    let b = TestNs::new("b");
    let (va, vb, moved) = (unique("va"), unique("vb"), unique("mv"));
    a.handle.create_veth(&va, &vb, Some(&b.ns)).await.unwrap();
    // The peer was born in B: it never existed in A.
    assert!(a.handle.link_by_name(&vb).await.unwrap_err().is_not_found());
    let peer = b.handle.link_by_name(&vb).await.unwrap();
    assert_eq!(peer.kind.as_deref(), Some("veth"));

    let orig = a.handle.link_by_name(&va).await.unwrap();
    a.handle
        .move_to_netns(orig.index, &b.ns, Some(&moved))
        .await
        .unwrap();
    assert!(a.handle.link_by_name(&va).await.unwrap_err().is_not_found());
    assert!(b.handle.link_by_name(&va).await.unwrap_err().is_not_found());
    let in_b = b.handle.link_by_name(&moved).await.unwrap();
    assert_eq!(in_b.mac(), orig.mac());

    // Rename, MAC, MTU, up: one by one and then all in one message.
    let renamed = unique("rn");
    b.handle.set_link_name(in_b.index, &renamed).await.unwrap();
    let mac: MacAddr = "02:42:ac:11:00:07".parse().unwrap();
    b.handle.set_mac(in_b.index, mac).await.unwrap();
    b.handle.set_mtu(in_b.index, 1400).await.unwrap();
    b.handle.set_up(in_b.index).await.unwrap();
    let l = b.handle.link_by_index(in_b.index).await.unwrap();
    assert_eq!(
        (l.name.as_str(), l.mac(), l.mtu, l.admin_up),
        (renamed.as_str(), Some(mac), 1400, true)
    );

    b.handle.set_down(l.index).await.unwrap();
    let upd = LinkUpdate {
        name: Some(moved.clone()),
        mac: orig.mac(),
        mtu: Some(orig.mtu),
        up: Some(false),
    };
    b.handle.update_link(l.index, &upd).await.unwrap();
    let l = b.handle.link_by_index(l.index).await.unwrap();
    assert_eq!(
        (l.name.as_str(), l.mac(), l.mtu, l.admin_up),
        (moved.as_str(), orig.mac(), orig.mtu, false)
    );

    b.handle
        .move_to_netns(l.index, &a.ns, Some(&va))
        .await
        .unwrap();
    let back = a.handle.link_by_name(&va).await.unwrap();
    assert_eq!((back.mac(), back.mtu), (orig.mac(), orig.mtu));
    let names: Vec<String> = a
        .handle
        .links()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert!(
        names.contains(&va) && names.contains(&"lo".to_string()),
        "{names:?}"
    );
}

#[tokio::test]
async fn errors_for_missing_links_and_name_collisions() {
    let a = TestNs::new("e");
    let b = TestNs::new("f");
    let missing = a.handle.link_by_name("nosuchlink0").await.unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
    assert!(matches!(missing.kind, ErrorKind::LinkNotFound));
    assert!(a
        .handle
        .link_by_index(987_654)
        .await
        .unwrap_err()
        .is_not_found());
    assert!(a
        .handle
        .set_mtu(987_654, 1500)
        .await
        .unwrap_err()
        .is_not_found());

    let (x, y) = (unique("x"), unique("y"));
    a.handle.create_veth(&x, &y, None).await.unwrap();
    let lx = a.handle.link_by_name(&x).await.unwrap();
    // Renaming onto an existing name, creating a duplicate, and moving into
    // a namespace where the name is taken are all "exists".
    assert!(a
        .handle
        .set_link_name(lx.index, &y)
        .await
        .unwrap_err()
        .is_exists());
    assert!(a
        .handle
        .create_veth(&x, &unique("z"), None)
        .await
        .unwrap_err()
        .is_exists());
    let (p, q) = (unique("p"), unique("q"));
    b.handle.create_veth(&p, &q, None).await.unwrap();
    let err = a
        .handle
        .move_to_netns(lx.index, &b.ns, Some(&p))
        .await
        .unwrap_err();
    assert!(err.is_exists(), "{err}");
    // The kernel moved the link under its old name, then refused the rename.
    assert!(
        matches!(err.kind, ErrorKind::MovedNotRenamed { .. }),
        "{err}"
    );
    let in_b = b.handle.link_by_name(&x).await.unwrap();
    assert_eq!(in_b.mac(), lx.mac());
    b.handle
        .move_to_netns(in_b.index, &a.ns, None)
        .await
        .unwrap();
    let lx = a.handle.link_by_name(&x).await.unwrap();
    // Without a rename, a name collision leaves the link where it was.
    let (r, s) = (unique("r"), unique("s"));
    b.handle.create_veth(&x, &r, None).await.unwrap();
    let err = a
        .handle
        .move_to_netns(lx.index, &b.ns, None)
        .await
        .unwrap_err();
    assert!(
        err.is_exists() && matches!(err.kind, ErrorKind::Kernel { .. }),
        "{err}"
    );
    assert_eq!(a.handle.link_by_name(&x).await.unwrap().index, lx.index);
    // When the old name is taken there, the kernel uses the new one.
    a.handle
        .move_to_netns(lx.index, &b.ns, Some(&s))
        .await
        .unwrap();
    let in_b = b.handle.link_by_name(&s).await.unwrap();
    b.handle
        .move_to_netns(in_b.index, &a.ns, Some(&x))
        .await
        .unwrap();
    let lx = a.handle.link_by_name(&x).await.unwrap();

    let err = a.handle.set_mtu(lx.index, 1_000_000).await.unwrap_err();
    assert_eq!(err.errno(), Some(nix::errno::Errno::EINVAL), "{err}");
    // The kernel's extended ack explains why; it is kept in the error.
    assert!(
        matches!(&err.kind, ErrorKind::Kernel { message: Some(m), .. } if m.to_lowercase().contains("mtu")),
        "{err}"
    );
    let err = a
        .handle
        .set_link_name(lx.index, "waytoolongname0123")
        .await
        .unwrap_err();
    assert!(matches!(err.kind, ErrorKind::InvalidInput(_)));

    a.handle.delete_link(lx.index).await.unwrap();
    assert!(a.handle.link_by_name(&y).await.unwrap_err().is_not_found());
    assert!(a
        .handle
        .delete_link(lx.index)
        .await
        .unwrap_err()
        .is_not_found());
}

#[tokio::test]
async fn altnames_are_listed_matched_and_deleted() {
    let a = TestNs::new("n");
    let (x, y) = (unique("x"), unique("y"));
    a.handle.create_veth(&x, &y, None).await.unwrap();
    let l = a.handle.link_by_name(&x).await.unwrap();
    let alts = vec![unique("al"), format!("a-long-altname-{}", unique("l"))];
    a.handle.add_altnames(l.index, &alts).await.unwrap();
    let got = a.handle.link_by_index(l.index).await.unwrap();
    assert_eq!(got.altnames, alts);
    // The kernel resolves a short altname like a name.
    assert_eq!(
        a.handle.link_by_name(&alts[0]).await.unwrap().index,
        l.index
    );
    a.handle.delete_altnames(l.index, &alts).await.unwrap();
    assert!(a
        .handle
        .link_by_index(l.index)
        .await
        .unwrap()
        .altnames
        .is_empty());
    assert!(a
        .handle
        .link_by_name(&alts[0])
        .await
        .unwrap_err()
        .is_not_found());
    a.handle.delete_altnames(l.index, &[]).await.unwrap();
}

#[tokio::test]
async fn bridge_master_and_vxlan() {
    let a = TestNs::new("br");
    let (br, x, y, vx) = (unique("br"), unique("x"), unique("y"), unique("vx"));
    a.handle.create_bridge(&br).await.unwrap();
    a.handle.create_veth(&x, &y, None).await.unwrap();
    let brl = a.handle.link_by_name(&br).await.unwrap();
    assert_eq!(brl.kind.as_deref(), Some("bridge"));
    let xl = a.handle.link_by_name(&x).await.unwrap();
    a.handle
        .set_master(xl.index, Some(brl.index))
        .await
        .unwrap();
    assert_eq!(
        a.handle.link_by_index(xl.index).await.unwrap().master,
        Some(brl.index)
    );
    a.handle.set_master(xl.index, None).await.unwrap();
    assert_eq!(a.handle.link_by_index(xl.index).await.unwrap().master, None);

    let mut cfg = jobnet_netlink::VxlanConfig::new(&vx, 4242);
    cfg.underlay = Some(xl.index);
    cfg.local = Some("10.99.0.1".parse().unwrap());
    cfg.mtu = Some(1450);
    a.handle.create_vxlan(&cfg).await.unwrap();
    let v = a.handle.link_by_name(&vx).await.unwrap();
    assert_eq!((v.kind.as_deref(), v.mtu), (Some("vxlan"), 1450));
    let out = std::process::Command::new("ip")
        .args(["-n", a.name(), "-d", "link", "show", &vx])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("vxlan id 4242") && text.contains("dstport 4789"),
        "{text}"
    );
    cfg.vni = 1 << 24;
    cfg.name = unique("vy");
    assert!(matches!(
        a.handle.create_vxlan(&cfg).await.unwrap_err().kind,
        ErrorKind::InvalidInput(_)
    ));
}
