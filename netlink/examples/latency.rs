//! Measures the cost of the operations a VF attach is made of, on a veth
//! in throwaway namespaces: `cargo run --release -p jobnet-netlink --example latency [cycles]`.

use std::time::{Duration, Instant};

use jobnet_netlink::{Handle, NetnsGuard};

fn stats(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let pick = |q: f64| v[((v.len() - 1) as f64 * q) as usize];
    println!(
        "{name:<34} median {:>7.1?} p90 {:>7.1?} max {:>7.1?}",
        pick(0.5),
        pick(0.9),
        v[v.len() - 1]
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cycles: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let pid = std::process::id();
    let host_g = NetnsGuard::create(&format!("jnl-h-{pid}"))?;
    let pod_g = NetnsGuard::create(&format!("jnl-p-{pid}"))?;
    let host_ns = host_g.open()?;
    let pod_ns = pod_g.open()?;
    let host = Handle::in_netns(&host_ns)?;
    host.create_veth("vf0", "rep0", None).await?;

    let (mut connect, mut get, mut move_in, mut move_out, mut cycle) =
        (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..cycles {
        let t0 = Instant::now();
        let pod = Handle::in_netns(&pod_ns)?;
        let t1 = Instant::now();
        let vf = host.link_by_name("vf0").await?;
        let t2 = Instant::now();
        host.move_to_netns(vf.index, &pod_ns, Some("net1")).await?;
        let t3 = Instant::now();
        let l = pod.link_by_name("net1").await?;
        pod.move_to_netns(l.index, &host_ns, Some("vf0")).await?;
        let t4 = Instant::now();
        connect.push(t1 - t0);
        get.push(t2 - t1);
        move_in.push(t3 - t2);
        move_out.push(t4 - t3);
        cycle.push(t4 - t0);
    }
    println!("{cycles} cycles");
    stats("Handle::in_netns", connect);
    stats("link_by_name", get);
    stats("move_to_netns + rename (in)", move_in);
    stats("get + move_to_netns + rename (out)", move_out);
    stats("whole cycle", cycle);
    Ok(())
}
