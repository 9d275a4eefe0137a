// xen-vchan typestate: a server waiting for its client (`Listener`) is not a byte stream; only
// `accept` turns it into a `Vchan`, once the client has connected and the rings are checked.
//
// Generic I/O code (here `std::io::copy`) cannot be handed a listener: E0277 (the trait bound
// `Listener<..>: std::io::Write` is not satisfied). The same call with the `Vchan` that
// `accept` returns compiles, so the error is the connection state, not a missing method name.
use xen_sim::{SimEvtchn, SimGrants, SimXenstore};
use xen_vchan::Listener;

fn early(mut l: Listener<SimGrants, SimEvtchn, SimXenstore>) {
    let mut input: &[u8] = b"before the client is there";
    std::io::copy(&mut input, &mut l).unwrap();
}

fn main() {}
