// DESIGN invariant 5: only the frontend initialises a shared ring. A backend has the ring
// through a foreign mapping, which is not FrontMemory, so it cannot build a FrontRing (whose
// constructor writes SHARED_RING_INIT) over it; it can only attach a BackRing.
use xen_gnttab::{ForeignMap, ForeignMapper, Writable};
use xen_ring::{BackRing, FrontRing, Protocol};
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

fn backend<M: ForeignMapper>(map: ForeignMap<M, Writable>) {
    let _front = FrontRing::<P, _, ()>::new(map);
}

fn attach_is_fine<M: ForeignMapper>(map: ForeignMap<M, Writable>) {
    let _back = BackRing::<P, _>::attach(map);
}

fn main() {}
