// DESIGN invariant 3: read-only and writable are the only access kinds.
//
// The seal of `Access` lives in a private module, so it cannot be implemented from outside
// either. E0603 (module `sealed` is private) is the guarantee that the seal cannot be broken.
use xen_gnttab::access::sealed::Sealed;

pub enum ReadWriteMaybe {}

impl Sealed for ReadWriteMaybe {}

fn main() {}
