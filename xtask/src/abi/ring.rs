//! `xen-ring`'s table: `ring/src/abi.rs` against `xen/io/ring.h` (and the protocols whose
//! rings the crate names: netif tx/rx/ctrl in `io/netif.h`, blkif in `io/blkif.h`).
//!
//! * The shared-ring header: the offsets of `req_prod`, `req_event`, `rsp_prod`,
//!   `rsp_event`, `pvt`, `__pad` and `ring` in a `struct X_sring`, measured on a ring of
//!   1-byte entries declared in the prelude with `DEFINE_RING_TYPES` and on the real
//!   `struct netif_tx_sring` and `struct blkif_sring`.
//! * The size rule: `xen_ring::abi::ring_size_pages` / `ring_size` against `ring.h`'s
//!   `__CONST_RING_SIZE` (compile-time) and `__RING_SIZE` (over a real `sring` pointer, as
//!   `FRONT_RING_INIT` computes `nr_ents`) for netif tx/rx/ctrl on one page, blkif on 1 to 16
//!   pages (orders 0-4), and the 1-byte probe at sizes where the power-of-two rounding bites.
//! * The entry size the Rust size rule is given for each protocol, against
//!   `sizeof(union X_sring_entry)`.
//! * `SHARED_RING_INIT`: run on a header filled with `0xff`, its four indices and the sum of
//!   its pad bytes against `SringHeader::initial(0)`.

use super::table::{AbiTable, FieldLayout, field_signedness, field_size};
use xen_ring::abi::{
    self, HEADER_SIZE, MAX_RING_PAGES, PAGE_SIZE, PVT, REQ_EVENT, REQ_PROD, RSP_EVENT, RSP_PROD,
    SringHeader,
};

/// The probe ring of the prelude: 1-byte requests and responses.
const PROBE: &str = "xtask_byte";

/// The rings the crate's docs and size tables name: (ring.h tag, entry bytes the Rust side
/// uses for it, pages). The entry sizes are xen-abi.md's: the larger of request and response.
const PROTOCOLS: &[(&str, usize, &[usize])] = &[
    ("netif_tx", 12, &[1]),
    ("netif_rx", 8, &[1]),
    ("xen_netif_ctrl", 16, &[1]),
    ("blkif", 112, &[1, 2, 4, 8, 16]),
];

/// Ring sizes in bytes for the probe's size-rule items: every page count, and sizes around
/// the power-of-two boundaries of 1-byte entries (64 + 2^k - 1, 64 + 2^k).
fn probe_sizes() -> Vec<usize> {
    let mut sizes: Vec<usize> = (1..=MAX_RING_PAGES).map(|p| p * PAGE_SIZE).collect();
    for k in [0, 1, 5, 9, 12] {
        sizes.push(HEADER_SIZE + (1 << k));
        sizes.push(HEADER_SIZE + (1 << k) + (1 << k) - 1);
    }
    sizes.sort_unstable();
    sizes.dedup();
    sizes
}

/// A C statement expression giving `field` of a header after `SHARED_RING_INIT` ran on one
/// filled with `0xff`.
fn after_init(field: &str) -> String {
    format!(
        "({{ struct {PROBE}_sring s; memset(&s, 0xff, sizeof s); SHARED_RING_INIT(&s); {field}; }})"
    )
}

/// A C statement expression for `__RING_SIZE` over a real, suitably sized ring of `tag`.
fn runtime_ring_size(tag: &str, bytes: usize) -> String {
    format!(
        "({{ static union {{ struct {tag}_sring s; unsigned char b[{bytes}]; }} m; \
         __RING_SIZE(&m.s, {bytes}); }})"
    )
}

/// Every offset, initial value and ring size of `xen_ring::abi`.
pub fn table() -> AbiTable {
    let mut t = AbiTable::new("ring");
    t.include("string.h")
        .include("xen/io/ring.h")
        .include("xen/io/netif.h")
        .include("xen/io/blkif.h");
    t.prelude.push_str(&format!(
        "struct {PROBE} {{ uint8_t b; }};\n\
         DEFINE_RING_TYPES({PROBE}, struct {PROBE}, struct {PROBE});\n"
    ));
    // ring.h's only object-like macro.
    t.cover("XEN_PAGE_SHIFT");
    t.constant(
        "PAGE_SIZE.trailing_zeros()",
        "XEN_PAGE_SHIFT",
        PAGE_SIZE.trailing_zeros(),
    )
    .constant("PAGE_SIZE", "(1 << XEN_PAGE_SHIFT)", PAGE_SIZE);

    // The header: the Rust struct's fields against each C sring (they share one layout).
    for tag in [PROBE, "netif_tx", "blkif"] {
        let c_type = format!("struct {tag}_sring");
        let mut field = |rust: &str, c: &str, layout: FieldLayout| {
            t.field(&format!("SringHeader@{tag}"), &c_type, rust, c, layout);
        };
        macro_rules! header_field {
            ($rust:ident = $c:literal) => {
                field(
                    stringify!($rust),
                    $c,
                    FieldLayout {
                        offset: core::mem::offset_of!(SringHeader, $rust),
                        size: field_size(|s: &SringHeader| &s.$rust),
                        signedness: field_signedness(|s: &SringHeader| &s.$rust),
                    },
                )
            };
        }
        header_field!(req_prod = "req_prod");
        header_field!(req_event = "req_event");
        header_field!(rsp_prod = "rsp_prod");
        header_field!(rsp_event = "rsp_event");
        header_field!(pvt = "pvt");
        header_field!(pad = "__pad");
        t.constant(
            &format!("HEADER_SIZE@{tag}"),
            &format!("offsetof({c_type}, ring)"),
            HEADER_SIZE,
        );
    }
    // The offset constants the rings use for their atomics.
    let probe = format!("struct {PROBE}_sring");
    t.constant("REQ_PROD", &format!("offsetof({probe}, req_prod)"), REQ_PROD)
        .constant("REQ_EVENT", &format!("offsetof({probe}, req_event)"), REQ_EVENT)
        .constant("RSP_PROD", &format!("offsetof({probe}, rsp_prod)"), RSP_PROD)
        .constant("RSP_EVENT", &format!("offsetof({probe}, rsp_event)"), RSP_EVENT)
        .constant("PVT", &format!("offsetof({probe}, pvt)"), PVT)
        .constant(
            "size_of(RING_IDX)",
            "sizeof(RING_IDX)",
            core::mem::size_of::<u32>(),
        )
        .constant(
            "signedness(RING_IDX)",
            "XTASK_SIGNEDNESS(*(RING_IDX *)0)",
            0,
        );
    // `abi::entry_offset` puts entry i at HEADER_SIZE + i * size: so does `ring[i]`.
    t.constant(
        "entry_offset(3,112)@blkif",
        "offsetof(struct blkif_sring, ring[3])",
        abi::entry_offset(3, 112),
    )
    .constant(
        "entry_offset(5,12)@netif_tx",
        "offsetof(struct netif_tx_sring, ring[5])",
        abi::entry_offset(5, 12),
    );

    // SHARED_RING_INIT.
    let init = SringHeader::initial(0);
    t.constant(
        "SringHeader::initial(0).req_prod",
        &after_init("s.req_prod"),
        init.req_prod,
    )
    .constant(
        "SringHeader::initial(0).req_event",
        &after_init("s.req_event"),
        init.req_event,
    )
    .constant(
        "SringHeader::initial(0).rsp_prod",
        &after_init("s.rsp_prod"),
        init.rsp_prod,
    )
    .constant(
        "SringHeader::initial(0).rsp_event",
        &after_init("s.rsp_event"),
        init.rsp_event,
    );
    let pad_sum: u64 = init
        .pvt
        .iter()
        .chain(init.pad.iter())
        .map(|&b| u64::from(b))
        .sum();
    t.constant(
        "sum(SringHeader::initial(0).pvt,pad)",
        &after_init(
            "unsigned long sum = 0; \
             for (size_t i = 0; i < sizeof s.pvt.pvt_pad; i++) sum += s.pvt.pvt_pad[i]; \
             for (size_t i = 0; i < sizeof s.__pad; i++) sum += s.__pad[i]; sum",
        ),
        pad_sum,
    );

    // The size rule for every protocol the crate names.
    for &(tag, entry, pages) in PROTOCOLS {
        t.constant(
            &format!("entry_size@{tag}"),
            &format!("sizeof(union {tag}_sring_entry)"),
            entry,
        );
        for &p in pages {
            let bytes = p * PAGE_SIZE;
            // `None` (no entry fits) would print as 0 and fail against C.
            let rust = abi::ring_size_pages(p, entry).unwrap_or(0);
            t.constant(
                &format!("ring_size_pages({p},{entry})@{tag}"),
                &format!("__CONST_RING_SIZE({tag}, {bytes})"),
                rust,
            );
            t.constant(
                &format!("ring_size({bytes},{entry})@{tag}.__RING_SIZE"),
                &runtime_ring_size(tag, bytes),
                abi::ring_size(bytes, entry),
            );
        }
    }
    for bytes in probe_sizes() {
        t.constant(
            &format!("ring_size({bytes},1)"),
            &format!("__CONST_RING_SIZE({PROBE}, {bytes})"),
            abi::ring_size(bytes, 1),
        );
    }
    t
}
