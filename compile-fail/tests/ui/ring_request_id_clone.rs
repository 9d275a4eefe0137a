// DESIGN invariant 4: a ring request ID is not Clone: there is no way to make a second handle
// to one leased ID.
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

fn duplicate<T: Clone>(t: &T) -> T {
    t.clone()
}

fn main() {
    let mut front = FrontRing::<P, _, ()>::new(SharedRegion::new_zeroed(4096)).unwrap();
    let id = front.lease().unwrap();
    let twin = duplicate(&id);
    id.submit(Msg::default(), ());
    twin.submit(Msg::default(), ());
}
