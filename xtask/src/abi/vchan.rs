//! `xen-vchan`'s table: `vchan/src/abi.rs` against `xen/io/libxenvchan.h`.

use super::table::{AbiTable, abi_struct, aggregate};
use xen_vchan::abi::{self, RingShared, VchanInterface};

aggregate!(RingShared);

/// Every size, offset and constant of `xen_vchan::abi` that the header defines.
pub fn table() -> AbiTable {
    let mut t = AbiTable::new("vchan");
    t.include("xen/io/libxenvchan.h");
    t.cover("VCHAN_");

    abi_struct!(&mut t, RingShared = "struct ring_shared" { cons, prod });
    abi_struct!(&mut t, VchanInterface = "struct vchan_interface" {
        left, right, left_order, right_order, cli_live, srv_live, cli_notify, srv_notify,
    });
    t.constant(
        "vchan::GRANTS",
        "offsetof(struct vchan_interface, grants)",
        abi::GRANTS,
    )
    .constant(
        "vchan::HEADER_SIZE",
        "sizeof(struct vchan_interface)",
        abi::HEADER_SIZE,
    )
    .constant(
        "vchan::GRANT_REF_SIZE",
        "sizeof(((struct vchan_interface *)0)->grants[0])",
        4usize,
    )
    .constant("vchan::NOTIFY_WRITE", "VCHAN_NOTIFY_WRITE", abi::NOTIFY_WRITE)
    .constant("vchan::NOTIFY_READ", "VCHAN_NOTIFY_READ", abi::NOTIFY_READ);
    // The offsets the ring code uses as plain constants, checked one by one too.
    for (name, value, field) in [
        ("LEFT_CONS", abi::LEFT_CONS, "left.cons"),
        ("LEFT_PROD", abi::LEFT_PROD, "left.prod"),
        ("RIGHT_CONS", abi::RIGHT_CONS, "right.cons"),
        ("RIGHT_PROD", abi::RIGHT_PROD, "right.prod"),
        ("LEFT_ORDER", abi::LEFT_ORDER, "left_order"),
        ("RIGHT_ORDER", abi::RIGHT_ORDER, "right_order"),
        ("CLI_LIVE", abi::CLI_LIVE, "cli_live"),
        ("SRV_LIVE", abi::SRV_LIVE, "srv_live"),
        ("CLI_NOTIFY", abi::CLI_NOTIFY, "cli_notify"),
        ("SRV_NOTIFY", abi::SRV_NOTIFY, "srv_notify"),
    ] {
        t.constant(
            &format!("vchan::{name}"),
            &format!("offsetof(struct vchan_interface, {field})"),
            value,
        );
    }
    t
}
