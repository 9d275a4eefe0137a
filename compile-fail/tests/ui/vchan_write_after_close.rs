//! xen-vchan: `close` consumes the channel, so a closed handle cannot be written (or read):
//! there is no "closed" state to check at run time.

use xen_sim::{SimEvtchn, SimGrants, SimXenstore};
use xen_vchan::ServerVchan;

fn finish(mut v: ServerVchan<SimGrants, SimEvtchn, SimXenstore>) {
    v.write_all(b"bye").unwrap();
    let _report = v.close();
    v.write_all(b"after close").unwrap();
}

fn main() {}
