// DESIGN invariant 3: read-only and writable are the only access kinds.
//
// `Access` is sealed; a third kind could claim `READONLY = false` for a mapping that is really
// read-only, or the other way around. E0277 (the private `Sealed` supertrait is not
// implemented) is the guarantee that `ReadOnly` and `Writable` are the only ones.
use xen_gnttab::Access;

pub enum ReadWriteMaybe {}

impl Access for ReadWriteMaybe {
    const READONLY: bool = false;
    const NAME: &'static str = "maybe";
}

fn main() {}
