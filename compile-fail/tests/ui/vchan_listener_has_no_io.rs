//! xen-vchan: a server waiting for its client (`Listener`) has no I/O methods; only
//! `accept` turns it into a channel, once the client has connected.

use xen_sim::{SimEvtchn, SimGrants, SimXenstore};
use xen_vchan::Listener;

fn early(mut l: Listener<SimGrants, SimEvtchn, SimXenstore>) {
    l.write_all(b"before the client is there").unwrap();
}

fn main() {}
