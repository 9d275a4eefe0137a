//! One thread writes `SIZE`-byte chunks into a simulated vchan and reads each back at once:
//! the per-call cost of the ring with no waiting, for instruction counts
//! (`valgrind --tool=callgrind target/release/examples/small_writes 100000 64`; run it with
//! two counts and divide the difference by the extra iterations). `BULK=1` uses the
//! bulk-stream calls (`write_more`, `flush`, `read_more`) instead of `write_all` / `read`.
#![cfg(not(loom))]

use std::time::Duration;
use xen_sim::Host;
use xen_vchan::{ClientConfig, ServerConfig, connect, listen, vchan_path};

fn main() {
    let mut args = std::env::args().skip(1);
    let iters: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let size: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);
    let host = Host::new();
    let _dom0 = host.create_domain("dom0");
    let srv = host.create_domain("server");
    let cli = host.create_domain("client");
    let path = vchan_path(srv.domid(), cli.domid(), 1);
    let order: u16 = std::env::var("ORDER")
        .ok()
        .and_then(|o| o.parse().ok())
        .unwrap_or(16);
    let config = ServerConfig::with_orders(
        path.clone(),
        order,
        if order == 10 || order == 20 { 11 } else { 10 },
    )
    .expect("orders");
    let listener = listen(
        srv.grants(),
        srv.evtchn(),
        srv.xenstore(),
        cli.domid(),
        &config,
    )
    .expect("listen");
    let mut client = connect(
        cli.mapper(),
        cli.evtchn(),
        cli.xenstore(),
        srv.domid(),
        &ClientConfig::new(path),
    )
    .expect("connect");
    let mut server = listener.accept(Duration::from_secs(5)).expect("accept");
    let src: Vec<u8> = (0..size).map(|i| (i * 7) as u8).collect();
    let mut buf = vec![0u8; size];
    if std::env::var_os("THREADS").is_some() {
        // Two threads, as `cargo xtask bench vchan` runs it: time and event counts.
        let start = std::time::Instant::now();
        std::thread::scope(|s| {
            s.spawn(|| {
                for _ in 0..iters {
                    client.write_all(&src).expect("write");
                }
            });
            let mut got = 0;
            while got < iters * size {
                got += server.read(&mut buf).expect("read");
            }
        });
        let secs = start.elapsed().as_secs_f64();
        let (sp, cp) = (server.port(), client.port());
        println!(
            "{:.2} GB/s; server port {:?}; client port {:?}",
            (iters * size) as f64 / secs / 1e9,
            host.port_stats(srv.domid(), sp),
            host.port_stats(cli.domid(), cp)
        );
        return;
    }
    let mut sum = 0u64;
    if std::env::var_os("BULK").is_some() {
        // The bulk-stream calls (`write_more` / `read_more`).
        for _ in 0..iters {
            let mut rest = &src[..];
            while !rest.is_empty() {
                let k = client.write_more(rest).expect("write");
                rest = &rest[k..];
            }
            // The reader is this thread: the writer publishes what it may still hold back
            // before the read (a barrier, and the peer's request, as any flush).
            client.flush().expect("flush");
            let n = server.read_more(&mut buf).expect("read");
            sum = sum.wrapping_add(u64::from(buf[n - 1]));
        }
    } else {
        for _ in 0..iters {
            client.write_all(&src).expect("write");
            let n = server.read(&mut buf).expect("read");
            sum = sum.wrapping_add(u64::from(buf[n - 1]));
        }
    }
    println!("{iters} x {size} B, sum {sum}");
}
