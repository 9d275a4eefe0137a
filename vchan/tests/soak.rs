//! Transfers in both directions at once, random write and read sizes, checksummed.
//!
//! By default (the workspace `cargo test`, debug build) the sizes are small. `cargo xtask ci`
//! runs this file again in release mode with `XEN_VCHAN_SOAK=full` (its `vchan-soak` step):
//! 1 GiB each way for representative order pairs and 16 MiB each way for every order pair
//! 10..=20 that libxenvchan's client accepts.
#![cfg(not(loom))]

mod common;

use common::*;
use std::time::Instant;
use xen_vchan::{Layout, LayoutError};

fn full() -> bool {
    std::env::var("XEN_VCHAN_SOAK").is_ok_and(|v| v == "full")
}

fn run(left: u16, right: u16, total: u64, seed: u64) -> f64 {
    let w = World::new();
    let (mut s, mut c) = w.pair(left, right);
    let t = Instant::now();
    two_way(&mut s, &mut c, total, seed);
    let secs = t.elapsed().as_secs_f64();
    drop(c);
    let r = s.close();
    assert_eq!(r.teardown.reclaim, 0, "the client unmapped everything");
    secs
}

#[test]
fn large_transfers_on_representative_order_pairs() {
    let total: u64 = if full() { 1 << 30 } else { 1 << 20 };
    // In-page both ways; in-page one way and multi-page the other; multi-page both ways.
    for (i, (l, r)) in [(10, 11), (11, 16), (20, 20)].into_iter().enumerate() {
        let secs = run(l, r, total, 1000 + i as u64);
        println!(
            "vchan-soak: orders {l}/{r}: {} MiB each way in {secs:.2} s ({:.2} GB/s both ways)",
            total >> 20,
            2.0 * total as f64 / secs / 1e9
        );
    }
}

#[test]
fn every_order_pair_libxenvchan_accepts() {
    let total: u64 = if full() { 16 << 20 } else { 64 << 10 };
    let t = Instant::now();
    let mut pairs = 0;
    for l in 10..=20u16 {
        for r in 10..=20u16 {
            match Layout::from_orders(l, r) {
                Ok(_) => {
                    run(l, r, total, u64::from(l) << 8 | u64::from(r));
                    pairs += 1;
                }
                // The client of libxenvchan refuses these too...
                Err(LayoutError::SameInPageOrder(_)) => assert_eq!(l, r),
                // ...and these only we refuse: the list of 256 refs would run into the ring
                // at 1024 (libxenvchan's own server never makes them).
                Err(LayoutError::GrantsOverlap { .. }) => {
                    assert!((l, r) == (10, 20) || (l, r) == (20, 10))
                }
                Err(e) => panic!("{l}/{r}: {e}"),
            }
        }
    }
    assert_eq!(pairs, 117);
    println!(
        "vchan-soak: {pairs} order pairs, {} KiB each way each, in {:.2} s",
        total >> 10,
        t.elapsed().as_secs_f64()
    );
}
