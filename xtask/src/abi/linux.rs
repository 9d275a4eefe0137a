//! `xen-linux`'s table: the ioctls of `xen/sys/{gntalloc,gntdev,evtchn}.h` (Linux's
//! `include/uapi/xen/`) and the xenstore wire format of `xen/io/xs_wire.h`.

use super::table::{AbiTable, abi_struct, aggregate};
use xen_linux::abi::{
    self, EvtchnBindInterdomain, EvtchnBindUnboundPort, EvtchnPortArg, GntallocAllocGref,
    GntallocDeallocGref, GntdevGrantCopy, GntdevGrantCopySegment, GntdevGrantRef,
    GntdevMapGrantRef, GntdevUnmapGrantRef, UnmapNotifyArg,
};
use xen_linux::xs_wire::{self, XsErrno, XsType, XsdSockmsg};

aggregate!(GntdevGrantRef);

// One Rust struct serves two identical C structs; the aliases give each check its own name.
type GntallocUnmapNotify = UnmapNotifyArg;
type GntdevUnmapNotify = UnmapNotifyArg;
type EvtchnUnbind = EvtchnPortArg;
type EvtchnNotify = EvtchnPortArg;

/// The C name of an `XS_*` message type. Exhaustive, so a new variant needs a C name.
fn xs_c_name(t: XsType) -> &'static str {
    t.name()
}

/// Finds an error string in `xsd_errors[]`: its index, or -1.
const PRELUDE: &str = "\
static long xtask_xsd_error_index(const char *name)
{
    for (unsigned i = 0; i < sizeof(xsd_errors) / sizeof(xsd_errors[0]); i++)
        if (strcmp(xsd_errors[i].errstring, name) == 0)
            return (long)i;
    return -1;
}
";

/// Every ioctl number, ioctl structure and xenstore wire item of `xen_linux`.
pub fn table() -> AbiTable {
    let mut t = AbiTable::new("linux");
    t.include("linux/ioctl.h")
        .include("errno.h")
        .include("string.h")
        .include("xen/xen.h")
        .include("xen/sys/gntalloc.h")
        .include("xen/sys/gntdev.h")
        .include("xen/sys/evtchn.h")
        .include("xen/io/xs_wire.h");
    t.prelude.push_str(PRELUDE);

    for prefix in [
        "IOCTL_GNTALLOC_",
        "IOCTL_GNTDEV_",
        "IOCTL_EVTCHN_",
        "GNTALLOC_",
        "GNTDEV_",
        "UNMAP_NOTIFY_",
        "XS_",
        "XENSTORE_",
    ] {
        t.cover(prefix);
    }
    let unused = "an ioctl xen-linux does not issue";
    let ring = "the xenstore ring page of a guest kernel; xen-linux talks to /dev/xen/xenbus";
    t.not_mirrored("IOCTL_GNTDEV_GET_OFFSET_FOR_VADDR", unused)
        .not_mirrored("IOCTL_GNTDEV_SET_MAX_GRANTS", unused)
        .not_mirrored("IOCTL_GNTDEV_DMABUF_EXP_FROM_REFS", unused)
        .not_mirrored("IOCTL_GNTDEV_DMABUF_EXP_WAIT_RELEASED", unused)
        .not_mirrored("IOCTL_GNTDEV_DMABUF_IMP_TO_REFS", unused)
        .not_mirrored("IOCTL_GNTDEV_DMABUF_IMP_RELEASE", unused)
        .not_mirrored("GNTDEV_DMA_FLAG_WC", "flag of the dma-buf ioctls, not used")
        .not_mirrored(
            "GNTDEV_DMA_FLAG_COHERENT",
            "flag of the dma-buf ioctls, not used",
        )
        .not_mirrored(
            "IOCTL_EVTCHN_BIND_VIRQ",
            "virtual IRQs are for kernels, not drivers",
        )
        .not_mirrored("IOCTL_EVTCHN_RESET", unused)
        .not_mirrored("IOCTL_EVTCHN_RESTRICT_DOMID", unused)
        .not_mirrored("XS_WRITE_NONE", "legacy XS_WRITE flag strings, unused by xenstored")
        .not_mirrored("XS_WRITE_CREATE", "legacy XS_WRITE flag strings, unused by xenstored")
        .not_mirrored(
            "XS_WRITE_CREATE_EXCL",
            "legacy XS_WRITE flag strings, unused by xenstored",
        )
        .not_mirrored("XENSTORE_RING_SIZE", ring)
        .not_mirrored("XENSTORE_SERVER_FEATURE_RECONNECTION", ring)
        .not_mirrored("XENSTORE_SERVER_FEATURE_ERROR", ring)
        .not_mirrored("XENSTORE_CONNECTED", ring)
        .not_mirrored("XENSTORE_RECONNECT", ring)
        .not_mirrored("XENSTORE_ERROR_NONE", ring)
        .not_mirrored("XENSTORE_ERROR_COMM", ring)
        .not_mirrored("XENSTORE_ERROR_RINGIDX", ring)
        .not_mirrored("XENSTORE_ERROR_PROTO", ring);

    // gntalloc.
    t.constant(
        "IOCTL_GNTALLOC_ALLOC_GREF",
        "IOCTL_GNTALLOC_ALLOC_GREF",
        abi::IOCTL_GNTALLOC_ALLOC_GREF,
    )
    .constant(
        "IOCTL_GNTALLOC_DEALLOC_GREF",
        "IOCTL_GNTALLOC_DEALLOC_GREF",
        abi::IOCTL_GNTALLOC_DEALLOC_GREF,
    )
    .constant(
        "IOCTL_GNTALLOC_SET_UNMAP_NOTIFY",
        "IOCTL_GNTALLOC_SET_UNMAP_NOTIFY",
        abi::IOCTL_GNTALLOC_SET_UNMAP_NOTIFY,
    )
    .constant(
        "GNTALLOC_FLAG_WRITABLE",
        "GNTALLOC_FLAG_WRITABLE",
        abi::GNTALLOC_FLAG_WRITABLE,
    )
    .constant(
        "UNMAP_NOTIFY_CLEAR_BYTE",
        "UNMAP_NOTIFY_CLEAR_BYTE",
        abi::UNMAP_NOTIFY_CLEAR_BYTE,
    )
    .constant(
        "UNMAP_NOTIFY_SEND_EVENT",
        "UNMAP_NOTIFY_SEND_EVENT",
        abi::UNMAP_NOTIFY_SEND_EVENT,
    );
    abi_struct!(&mut t, GntallocAllocGref = "struct ioctl_gntalloc_alloc_gref" {
        domid, flags, count, index, gref_ids,
    });
    abi_struct!(&mut t, GntallocDeallocGref = "struct ioctl_gntalloc_dealloc_gref" {
        index, count,
    });
    abi_struct!(&mut t, GntallocUnmapNotify = "struct ioctl_gntalloc_unmap_notify" {
        index, action, event_channel_port,
    });

    // gntdev.
    t.constant(
        "IOCTL_GNTDEV_MAP_GRANT_REF",
        "IOCTL_GNTDEV_MAP_GRANT_REF",
        abi::IOCTL_GNTDEV_MAP_GRANT_REF,
    )
    .constant(
        "IOCTL_GNTDEV_UNMAP_GRANT_REF",
        "IOCTL_GNTDEV_UNMAP_GRANT_REF",
        abi::IOCTL_GNTDEV_UNMAP_GRANT_REF,
    )
    .constant(
        "IOCTL_GNTDEV_SET_UNMAP_NOTIFY",
        "IOCTL_GNTDEV_SET_UNMAP_NOTIFY",
        abi::IOCTL_GNTDEV_SET_UNMAP_NOTIFY,
    )
    .constant(
        "IOCTL_GNTDEV_GRANT_COPY",
        "IOCTL_GNTDEV_GRANT_COPY",
        abi::IOCTL_GNTDEV_GRANT_COPY,
    );
    abi_struct!(&mut t, GntdevGrantRef = "struct ioctl_gntdev_grant_ref" {
        domid, ref_ = "ref",
    });
    abi_struct!(&mut t, GntdevMapGrantRef = "struct ioctl_gntdev_map_grant_ref" {
        count, pad, index, refs,
    });
    abi_struct!(&mut t, GntdevUnmapGrantRef = "struct ioctl_gntdev_unmap_grant_ref" {
        index, count, pad,
    });
    abi_struct!(&mut t, GntdevUnmapNotify = "struct ioctl_gntdev_unmap_notify" {
        index, action, event_channel_port,
    });
    // `source`/`dest` are C unions (a pointer or a foreign grant) that Rust holds as `u64`,
    // and `segments` is a pointer held as `u64`: their signedness differs by design, so only
    // offsets and sizes are checked, plus where the foreign grant's fields sit in the union.
    abi_struct!(&mut t, GntdevGrantCopySegment = "struct ioctl_gntdev_grant_copy_segment" {
        len, flags, status,
    });
    let seg = "struct ioctl_gntdev_grant_copy_segment";
    for (field, offset) in [
        ("source", core::mem::offset_of!(GntdevGrantCopySegment, source)),
        ("dest", core::mem::offset_of!(GntdevGrantCopySegment, dest)),
    ] {
        t.constant(
            &format!("offset_of!(GntdevGrantCopySegment,{field})"),
            &format!("offsetof({seg}, {field})"),
            offset,
        )
        .constant(
            &format!("size_of(GntdevGrantCopySegment.{field})"),
            &format!("sizeof((({seg} *)0)->{field})"),
            size_of::<u64>(),
        );
    }
    t.constant(
        "COPY_FOREIGN_REF_AT",
        &format!("offsetof({seg}, source.foreign.ref) - offsetof({seg}, source)"),
        0usize,
    )
    .constant(
        "COPY_FOREIGN_OFFSET_AT",
        &format!("offsetof({seg}, source.foreign.offset) - offsetof({seg}, source)"),
        abi::COPY_FOREIGN_OFFSET_AT,
    )
    .constant(
        "COPY_FOREIGN_DOMID_AT",
        &format!("offsetof({seg}, dest.foreign.domid) - offsetof({seg}, dest)"),
        abi::COPY_FOREIGN_DOMID_AT,
    )
    .constant(
        "size_of(foreign.domid)",
        &format!("sizeof((({seg} *)0)->source.foreign.domid)"),
        size_of::<u16>(),
    )
    .constant("GNTCOPY_SOURCE_GREF(linux)", "GNTCOPY_source_gref", abi::GNTCOPY_SOURCE_GREF)
    .constant("GNTCOPY_DEST_GREF(linux)", "GNTCOPY_dest_gref", abi::GNTCOPY_DEST_GREF);
    abi_struct!(&mut t, GntdevGrantCopy = "struct ioctl_gntdev_grant_copy" { count });
    let copy = "struct ioctl_gntdev_grant_copy";
    t.constant(
        "offset_of!(GntdevGrantCopy,segments)",
        &format!("offsetof({copy}, segments)"),
        core::mem::offset_of!(GntdevGrantCopy, segments),
    )
    .constant(
        "size_of(GntdevGrantCopy.segments)",
        &format!("sizeof((({copy} *)0)->segments)"),
        size_of::<u64>(),
    );

    // evtchn.
    t.constant(
        "IOCTL_EVTCHN_BIND_INTERDOMAIN",
        "IOCTL_EVTCHN_BIND_INTERDOMAIN",
        abi::IOCTL_EVTCHN_BIND_INTERDOMAIN,
    )
    .constant(
        "IOCTL_EVTCHN_BIND_UNBOUND_PORT",
        "IOCTL_EVTCHN_BIND_UNBOUND_PORT",
        abi::IOCTL_EVTCHN_BIND_UNBOUND_PORT,
    )
    .constant("IOCTL_EVTCHN_UNBIND", "IOCTL_EVTCHN_UNBIND", abi::IOCTL_EVTCHN_UNBIND)
    .constant("IOCTL_EVTCHN_NOTIFY", "IOCTL_EVTCHN_NOTIFY", abi::IOCTL_EVTCHN_NOTIFY);
    abi_struct!(&mut t, EvtchnBindInterdomain = "struct ioctl_evtchn_bind_interdomain" {
        remote_domain, remote_port,
    });
    abi_struct!(&mut t, EvtchnBindUnboundPort = "struct ioctl_evtchn_bind_unbound_port" {
        remote_domain,
    });
    abi_struct!(&mut t, EvtchnUnbind = "struct ioctl_evtchn_unbind" { port });
    abi_struct!(&mut t, EvtchnNotify = "struct ioctl_evtchn_notify" { port });

    // xenstore wire.
    abi_struct!(&mut t, XsdSockmsg = "struct xsd_sockmsg" {
        type_ = "type", req_id, tx_id, len,
    });
    for ty in XsType::ALL {
        t.constant(&format!("XsType::{ty:?}"), xs_c_name(ty), ty as u32);
    }
    t.constant("XsType::Control(XS_DEBUG)", "XS_DEBUG", XsType::Control as u32)
        .constant("XsType::COUNT", "XS_TYPE_COUNT", XsType::COUNT)
        .constant("XsType::INVALID", "XS_INVALID", XsType::INVALID)
        .constant("PAYLOAD_MAX", "XENSTORE_PAYLOAD_MAX", xs_wire::PAYLOAD_MAX)
        .constant("ABS_PATH_MAX", "XENSTORE_ABS_PATH_MAX", xs_wire::ABS_PATH_MAX)
        .constant("REL_PATH_MAX", "XENSTORE_REL_PATH_MAX", xs_wire::REL_PATH_MAX)
        .constant(
            "XsErrno::ALL.len()",
            "sizeof(xsd_errors) / sizeof(xsd_errors[0])",
            XsErrno::ALL.len(),
        );
    for (i, e) in XsErrno::ALL.into_iter().enumerate() {
        t.constant(
            &format!("XsErrno::{e:?}.errnum()"),
            &format!("xsd_errors[{i}].errnum"),
            e.errnum(),
        )
        .constant(
            &format!("XsErrno::{e:?}.index"),
            &format!("xtask_xsd_error_index(\"{}\")", e.name()),
            i,
        );
    }
    t
}
