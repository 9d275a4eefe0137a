// DESIGN invariant 4: a ring request ID is not Copy. Using a leased ID after moving it (as a
// copy would) is a use of a moved value.
use xen_gnttab::SharedRegion;
use xen_ring::{FrontRing, Protocol};
use zerocopy::{FromBytes, Immutable, IntoBytes};

#[repr(C)]
#[derive(Clone, Copy, Default, FromBytes, IntoBytes, Immutable)]
struct Msg {
    id: u16,
    val: u16,
}

enum P {}
impl Protocol for P {
    type Request = Msg;
    type Response = Msg;
    type Id = u16;
    fn set_request_id(m: &mut Msg, id: u16) {
        m.id = id
    }
    fn request_id(m: &Msg) -> u16 {
        m.id
    }
    fn set_response_id(m: &mut Msg, id: u16) {
        m.id = id
    }
    fn response_id(m: &Msg) -> u16 {
        m.id
    }
}

fn main() {
    let mut front = FrontRing::<P, _, ()>::new(SharedRegion::new_zeroed(4096)).unwrap();
    let id = front.lease().unwrap();
    let first = id;
    let second = id;
    first.submit(Msg::default(), ());
    second.submit(Msg::default(), ());
}
