// DESIGN invariant 4 (MirageOS MSA00): one ID cannot be used for two requests: submitting
// uses the leased ID up.
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
    let id = front.lease().unwrap();
    id.submit(Msg { id: 0, val: 1 }, vec![1]);
    id.submit(Msg { id: 0, val: 2 }, vec![2]);
}
