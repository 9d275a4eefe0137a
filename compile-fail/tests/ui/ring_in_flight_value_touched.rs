// DESIGN invariant 4: what a request uses (grants, buffers) is owned by the ring until its
// response is consumed.
//
// Here the in-flight value is a mutable borrow of the caller's buffer. The ring keeps it until
// the response hands it back, so refilling the buffer while the request is in flight (the
// MSA00 refill) is E0499: `buffer` is still mutably borrowed by the ring, which is used again
// below. Without the ring, the same borrow would have ended at its last use and `fill`
// would compile: the error is the ring holding the value, not a moved variable.
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
    let mut buffer = vec![0u8; 64];
    let mut front = FrontRing::<P, _, &mut Vec<u8>>::new(SharedRegion::new_zeroed(4096)).unwrap();
    front.lease().unwrap().submit(Msg::default(), &mut buffer);
    buffer.fill(0xff);
    let _ = front.push_requests();
}
