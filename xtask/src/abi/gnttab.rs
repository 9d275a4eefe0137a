//! `xen-gnttab`'s table: `gnttab/src/abi.rs` against `xen/grant_table.h` and `xen/xen.h`.

use super::table::{AbiTable, abi_struct, aggregate, typedef};
use xen_gnttab::abi::{
    self, Domid, GntStatus, GnttabCopy, GnttabCopyPtr, GnttabMapGrantRef, GnttabUnmapGrantRef,
    GrantEntryV1, GrantHandle, GrantRef, GtfFlags, op,
};

aggregate!(GnttabCopyPtr);

/// The C name of a `GTF_*` flag, by its `bitflags` name; `None` for a flag added to the Rust
/// side without a known counterpart (it is then reported as Rust-only).
fn gtf_c_name(rust: &str) -> Option<&'static str> {
    Some(match rust {
        "PERMIT_ACCESS" => "GTF_permit_access",
        "ACCEPT_TRANSFER" => "GTF_accept_transfer",
        "TRANSITIVE" => "GTF_transitive",
        "READONLY" => "GTF_readonly",
        "READING" => "GTF_reading",
        "WRITING" => "GTF_writing",
        "PWT" => "GTF_PWT",
        "PCD" => "GTF_PCD",
        "PAT" => "GTF_PAT",
        "SUB_PAGE" => "GTF_sub_page",
        _ => return None,
    })
}

/// The C name of a `GNTST_*` failure status. Exhaustive, so a new variant needs a C name.
fn gntst_c_name(status: GntStatus) -> &'static str {
    match status {
        GntStatus::GeneralError => "GNTST_general_error",
        GntStatus::BadDomain => "GNTST_bad_domain",
        GntStatus::BadGntref => "GNTST_bad_gntref",
        GntStatus::BadHandle => "GNTST_bad_handle",
        GntStatus::BadVirtAddr => "GNTST_bad_virt_addr",
        GntStatus::BadDevAddr => "GNTST_bad_dev_addr",
        GntStatus::NoDeviceSpace => "GNTST_no_device_space",
        GntStatus::PermissionDenied => "GNTST_permission_denied",
        GntStatus::BadPage => "GNTST_bad_page",
        GntStatus::BadCopyArg => "GNTST_bad_copy_arg",
        GntStatus::AddressTooBig => "GNTST_address_too_big",
        GntStatus::Eagain => "GNTST_eagain",
        GntStatus::NoSpace => "GNTST_no_space",
    }
}

/// Every size, offset and constant of `xen_gnttab::abi`.
pub fn table() -> AbiTable {
    let mut t = AbiTable::new("gnttab");
    t.include("xen/xen.h")
        .include("xen/grant_table.h")
        // Only for `XC_PAGE_SIZE`: the public headers leave the 4 KiB page implicit.
        .include("xenctrl.h");

    for prefix in [
        "GTF_", "GNTMAP_", "GNTCOPY_", "GNTST_", "GNTTABOP_", "GNTTAB_", "DOMID_",
    ] {
        t.cover(prefix);
    }
    t.not_mirrored(
        "GNTTABOP_error_msgs",
        "a C string-array initialiser; GntStatus carries its own messages",
    )
    .not_mirrored(
        "GNTMAP_guest_avail_mask",
        "bits for the guest's own use in map flags; no driver uses them",
    )
    .not_mirrored(
        "GNTTAB_CACHE_CLEAN",
        "argument of GNTTABOP_cache_flush (Arm cache maintenance), not used",
    )
    .not_mirrored(
        "GNTTAB_CACHE_INVAL",
        "argument of GNTTABOP_cache_flush (Arm cache maintenance), not used",
    )
    .not_mirrored(
        "GNTTAB_CACHE_SOURCE_GREF",
        "argument of GNTTABOP_cache_flush (Arm cache maintenance), not used",
    )
    .not_mirrored(
        "DOMID_MASK",
        "a mask for packing domids into other fields; Domid::is_real covers the need",
    );

    // Scalar types.
    typedef!(&mut t, GrantRef.0 = "grant_ref_t");
    typedef!(&mut t, GrantHandle.0 = "grant_handle_t");
    typedef!(&mut t, Domid.0 = "domid_t");

    // Wire structs.
    abi_struct!(&mut t, GrantEntryV1 = "struct grant_entry_v1" { flags, domid, frame });
    t.constant(
        "ENTRY_V1_FLAGS_OFFSET",
        "offsetof(struct grant_entry_v1, flags)",
        abi::ENTRY_V1_FLAGS_OFFSET,
    )
    .constant(
        "ENTRY_V1_DOMID_OFFSET",
        "offsetof(struct grant_entry_v1, domid)",
        abi::ENTRY_V1_DOMID_OFFSET,
    )
    .constant(
        "ENTRY_V1_FRAME_OFFSET",
        "offsetof(struct grant_entry_v1, frame)",
        abi::ENTRY_V1_FRAME_OFFSET,
    );
    abi_struct!(&mut t, GnttabMapGrantRef = "struct gnttab_map_grant_ref" {
        host_addr, flags, ref_ = "ref", dom, status, handle, dev_bus_addr,
    });
    abi_struct!(&mut t, GnttabUnmapGrantRef = "struct gnttab_unmap_grant_ref" {
        host_addr, dev_bus_addr, handle, status,
    });
    // `u` is a union of `ref` (grant_ref_t) and `gmfn` (xen_pfn_t); Rust holds it as its
    // widest member.
    abi_struct!(&mut t, GnttabCopyPtr = "struct gnttab_copy_ptr" {
        u = "u.gmfn", domid, offset,
    });
    t.constant(
        "union_size(GnttabCopyPtr.u)",
        "sizeof(((struct gnttab_copy_ptr *)0)->u)",
        core::mem::size_of::<u64>(),
    );
    abi_struct!(&mut t, GnttabCopy = "struct gnttab_copy" {
        source, dest, len, flags, status,
    });

    // Pages and reserved entries.
    t.constant("PAGE_SIZE", "XC_PAGE_SIZE", abi::PAGE_SIZE)
        .constant(
            "ENTRIES_PER_FRAME_V1",
            "XC_PAGE_SIZE / sizeof(grant_entry_v1_t)",
            abi::ENTRIES_PER_FRAME_V1,
        )
        .constant(
            "NR_RESERVED_ENTRIES",
            "GNTTAB_NR_RESERVED_ENTRIES",
            abi::NR_RESERVED_ENTRIES,
        )
        .constant(
            "RESERVED_CONSOLE",
            "GNTTAB_RESERVED_CONSOLE",
            abi::RESERVED_CONSOLE,
        )
        .constant(
            "RESERVED_XENSTORE",
            "GNTTAB_RESERVED_XENSTORE",
            abi::RESERVED_XENSTORE,
        );

    // Domain ids (`Domid::DOM0` is 0 by definition and has no macro).
    t.constant(
        "Domid::FIRST_RESERVED",
        "DOMID_FIRST_RESERVED",
        Domid::FIRST_RESERVED.0,
    )
    .constant("Domid::SELF", "DOMID_SELF", Domid::SELF.0)
    .constant("Domid::IO", "DOMID_IO", Domid::IO.0)
    .constant("Domid::XEN", "DOMID_XEN", Domid::XEN.0)
    .constant("Domid::COW", "DOMID_COW", Domid::COW.0)
    .constant("Domid::INVALID", "DOMID_INVALID", Domid::INVALID.0)
    .constant("Domid::IDLE", "DOMID_IDLE", Domid::IDLE.0);

    // Grant-entry flags, as plain constants and as `GtfFlags`.
    t.constant("GTF_INVALID", "GTF_invalid", abi::GTF_INVALID)
        .constant("GTF_PERMIT_ACCESS", "GTF_permit_access", abi::GTF_PERMIT_ACCESS)
        .constant(
            "GTF_ACCEPT_TRANSFER",
            "GTF_accept_transfer",
            abi::GTF_ACCEPT_TRANSFER,
        )
        .constant("GTF_TRANSITIVE", "GTF_transitive", abi::GTF_TRANSITIVE)
        .constant("GTF_TYPE_MASK", "GTF_type_mask", abi::GTF_TYPE_MASK)
        .constant("GTF_READONLY", "GTF_readonly", abi::GTF_READONLY)
        .constant("GTF_READING", "GTF_reading", abi::GTF_READING)
        .constant("GTF_WRITING", "GTF_writing", abi::GTF_WRITING)
        .constant("GTF_PWT", "GTF_PWT", abi::GTF_PWT)
        .constant("GTF_PCD", "GTF_PCD", abi::GTF_PCD)
        .constant("GTF_PAT", "GTF_PAT", abi::GTF_PAT)
        .constant("GTF_SUB_PAGE", "GTF_sub_page", abi::GTF_SUB_PAGE)
        .constant(
            "GTF_TRANSFER_COMMITTED",
            "GTF_transfer_committed",
            abi::GTF_TRANSFER_COMMITTED,
        )
        .constant(
            "GTF_TRANSFER_COMPLETED",
            "GTF_transfer_completed",
            abi::GTF_TRANSFER_COMPLETED,
        );
    for flag in <GtfFlags as bitflags::Flags>::FLAGS {
        t.item(
            &format!("GtfFlags::{}", flag.name()),
            gtf_c_name(flag.name()),
            flag.value().bits(),
        );
    }

    // Hypercall sub-operations.
    t.constant("op::MAP_GRANT_REF", "GNTTABOP_map_grant_ref", op::MAP_GRANT_REF)
        .constant(
            "op::UNMAP_GRANT_REF",
            "GNTTABOP_unmap_grant_ref",
            op::UNMAP_GRANT_REF,
        )
        .constant("op::SETUP_TABLE", "GNTTABOP_setup_table", op::SETUP_TABLE)
        .constant("op::DUMP_TABLE", "GNTTABOP_dump_table", op::DUMP_TABLE)
        .constant("op::TRANSFER", "GNTTABOP_transfer", op::TRANSFER)
        .constant("op::COPY", "GNTTABOP_copy", op::COPY)
        .constant("op::QUERY_SIZE", "GNTTABOP_query_size", op::QUERY_SIZE)
        .constant(
            "op::UNMAP_AND_REPLACE",
            "GNTTABOP_unmap_and_replace",
            op::UNMAP_AND_REPLACE,
        )
        .constant("op::SET_VERSION", "GNTTABOP_set_version", op::SET_VERSION)
        .constant(
            "op::GET_STATUS_FRAMES",
            "GNTTABOP_get_status_frames",
            op::GET_STATUS_FRAMES,
        )
        .constant("op::GET_VERSION", "GNTTABOP_get_version", op::GET_VERSION)
        .constant(
            "op::SWAP_GRANT_REF",
            "GNTTABOP_swap_grant_ref",
            op::SWAP_GRANT_REF,
        )
        .constant("op::CACHE_FLUSH", "GNTTABOP_cache_flush", op::CACHE_FLUSH);

    // Map and copy flags.
    t.constant(
        "GNTMAP_DEVICE_MAP",
        "GNTMAP_device_map",
        abi::GNTMAP_DEVICE_MAP,
    )
    .constant("GNTMAP_HOST_MAP", "GNTMAP_host_map", abi::GNTMAP_HOST_MAP)
    .constant("GNTMAP_READONLY", "GNTMAP_readonly", abi::GNTMAP_READONLY)
    .constant(
        "GNTMAP_APPLICATION_MAP",
        "GNTMAP_application_map",
        abi::GNTMAP_APPLICATION_MAP,
    )
    .constant(
        "GNTMAP_CONTAINS_PTE",
        "GNTMAP_contains_pte",
        abi::GNTMAP_CONTAINS_PTE,
    )
    .constant(
        "GNTCOPY_SOURCE_GREF",
        "GNTCOPY_source_gref",
        abi::GNTCOPY_SOURCE_GREF,
    )
    .constant(
        "GNTCOPY_DEST_GREF",
        "GNTCOPY_dest_gref",
        abi::GNTCOPY_DEST_GREF,
    );

    // Statuses.
    t.constant("GNTST_OKAY", "GNTST_okay", abi::GNTST_OKAY);
    for status in GntStatus::ALL {
        t.constant(
            &format!("GntStatus::{status:?}"),
            gntst_c_name(status),
            status.code(),
        );
    }
    t
}
