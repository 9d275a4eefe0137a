// DESIGN invariant 4: what a request uses (grants, buffers) is owned by the ring until its
// response is consumed. The caller cannot keep a borrow of the buffer across the submit and
// refill it while the backend may still be reading it.
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
    let mut front = FrontRing::<P, _, Vec<u8>>::new(SharedRegion::new_zeroed(4096)).unwrap();
    let mut buffer = vec![0u8; 64];
    let keep = &mut buffer;
    front.lease().unwrap().submit(Msg::default(), buffer);
    keep.fill(0xff);
}
