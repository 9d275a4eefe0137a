//! The building blocks of an ABI table: items pairing a Rust value with a C expression.
//!
//! A table module (`gnttab.rs`, ...) builds one [`AbiTable`] with the helpers here. The Rust
//! value of every item is computed from the crate's own definitions (`size_of`, `offset_of!`,
//! its constants); the C program that `cargo xtask abi` compiles is generated from the same
//! items, so the two sides cannot drift apart.
//!
//! Item names are the key both sides are compared by. They are `<table>.<what>` with the Rust
//! path of the thing checked, for example `gnttab.offset_of!(GnttabCopy,status)` or
//! `gnttab.GtfFlags::READONLY`. Whitespace is removed from names.

/// One checked fact: a Rust value and the C expression that must evaluate to the same number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbiItem {
    /// The unique key, `<table>.<rust path>`, without whitespace.
    pub name: String,
    /// A C integer constant expression, or `None` when no C counterpart is known (the item is
    /// then reported as present on the Rust side only).
    pub c_expr: Option<String>,
    /// The value the Rust definitions give.
    pub rust: i128,
}

/// All the items of one crate, and what its C side needs.
#[derive(Debug, Clone, Default)]
pub struct AbiTable {
    /// The table name, the prefix of its item names (`gnttab`).
    pub name: &'static str,
    /// Headers to `#include <...>`, in order (after `<stddef.h>`, `<stdint.h>`, `<stdio.h>`).
    pub headers: Vec<&'static str>,
    /// C declarations placed after the includes, for items that need a type of their own
    /// (for instance a `DEFINE_RING_TYPES` instance to measure a ring): append to it.
    pub prelude: String,
    /// The items, in the order they are printed.
    pub items: Vec<AbiItem>,
    /// Macro-name prefixes this table mirrors completely: every object-like macro the headers
    /// define with such a prefix must be the C expression of an item, or be listed in
    /// [`not_mirrored`](Self::not_mirrored). New constants in the headers are thus noticed.
    pub covered_prefixes: Vec<&'static str>,
    /// Macros under a covered prefix that the Rust code deliberately leaves out, with why.
    pub not_mirrored: Vec<(&'static str, &'static str)>,
}

/// How a value's type is classified by the `signedness(...)` items: `1` for a signed integer,
/// `0` for an unsigned one, `-1` for anything else (structs, unions, arrays). The C side
/// computes the same with `_Generic`.
pub trait AbiType {
    /// `1`, `0` or `-1`, as above.
    const SIGNEDNESS: i8;
}

macro_rules! impl_abi_type {
    ($signedness:literal: $($t:ty),*) => {
        $(impl AbiType for $t {
            const SIGNEDNESS: i8 = $signedness;
        })*
    };
}
impl_abi_type!(1: i8, i16, i32, i64, isize);
impl_abi_type!(0: u8, u16, u32, u64, usize);

impl<T, const N: usize> AbiType for [T; N] {
    const SIGNEDNESS: i8 = -1;
}

/// Declares types used as fields of checked structs that are not integers (nested structs,
/// unions): their signedness is `-1`. One line per type, in the table module.
macro_rules! aggregate {
    ($($t:ty),* $(,)?) => {
        $(impl $crate::abi::table::AbiType for $t {
            const SIGNEDNESS: i8 = -1;
        })*
    };
}
pub(crate) use aggregate;

/// A Rust value an item can hold: any integer, or a `bool`.
pub trait AbiValue {
    /// The value, losslessly.
    fn to_i128(self) -> i128;
}

macro_rules! impl_abi_value {
    ($($t:ty),*) => {
        $(impl AbiValue for $t {
            fn to_i128(self) -> i128 {
                // Lossless: every type listed is at most 64 bits wide.
                self as i128
            }
        })*
    };
}
impl_abi_value!(i8, i16, i32, i64, isize, u8, u16, u32, u64, usize, bool);

/// Where a Rust field is and what it holds, as [`AbiTable::field`] checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldLayout {
    /// `offset_of!` the field.
    pub offset: usize,
    /// `size_of` its type.
    pub size: usize,
    /// [`AbiType::SIGNEDNESS`] of its type.
    pub signedness: i8,
}

/// The size of the field `access` projects to, without a value of `T`.
pub fn field_size<T, F>(_access: fn(&T) -> &F) -> usize {
    core::mem::size_of::<F>()
}

/// The [`AbiType::SIGNEDNESS`] of the field `access` projects to.
pub fn field_signedness<T, F: AbiType>(_access: fn(&T) -> &F) -> i8 {
    F::SIGNEDNESS
}

/// Removes whitespace, which `stringify!` may put into paths.
fn compact(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

impl AbiTable {
    /// An empty table whose item names start with `name.`.
    pub fn new(name: &'static str) -> AbiTable {
        AbiTable {
            name,
            ..AbiTable::default()
        }
    }

    /// Adds `#include <header>`.
    pub fn include(&mut self, header: &'static str) -> &mut Self {
        self.headers.push(header);
        self
    }

    /// Requires every header macro starting with `prefix` to be mirrored (see
    /// [`covered_prefixes`](Self::covered_prefixes)).
    pub fn cover(&mut self, prefix: &'static str) -> &mut Self {
        self.covered_prefixes.push(prefix);
        self
    }

    /// Exempts `macro_name` from the coverage rule, for `reason`.
    pub fn not_mirrored(&mut self, macro_name: &'static str, reason: &'static str) -> &mut Self {
        self.not_mirrored.push((macro_name, reason));
        self
    }

    /// Adds an item named `<table>.<rust_name>`; `c_expr` `None` marks it as having no known
    /// C counterpart.
    pub fn item(&mut self, rust_name: &str, c_expr: Option<&str>, value: impl AbiValue) {
        self.items.push(AbiItem {
            name: format!("{}.{}", self.name, compact(rust_name)),
            c_expr: c_expr.map(str::to_owned),
            rust: value.to_i128(),
        });
    }

    /// Adds a constant: `rust_name` (a path as written in the table module) must equal the
    /// C expression `c_expr`, usually a macro name.
    pub fn constant(&mut self, rust_name: &str, c_expr: &str, value: impl AbiValue) -> &mut Self {
        self.item(rust_name, Some(c_expr), value);
        self
    }

    /// Adds `size_of` and `align_of` of `T` against `sizeof`/`_Alignof` of the C type `c_type`.
    pub fn size_align<T>(&mut self, rust_name: &str, c_type: &str) -> &mut Self {
        let rust_name = compact(rust_name);
        self.item(
            &format!("size_of::<{rust_name}>"),
            Some(&format!("sizeof({c_type})")),
            core::mem::size_of::<T>(),
        );
        self.item(
            &format!("align_of::<{rust_name}>"),
            Some(&format!("_Alignof({c_type})")),
            core::mem::align_of::<T>(),
        );
        self
    }

    /// Adds a field of a struct: its offset, its size and its signedness, against the member
    /// `c_field` (a member designator such as `ref` or `u.gmfn`) of the C type `c_type`.
    pub fn field(
        &mut self,
        rust_struct: &str,
        c_type: &str,
        rust_field: &str,
        c_field: &str,
        layout: FieldLayout,
    ) -> &mut Self {
        let FieldLayout {
            offset,
            size,
            signedness,
        } = layout;
        let (s, f) = (compact(rust_struct), compact(rust_field));
        let member = format!("((({c_type} *)0)->{c_field})");
        self.item(
            &format!("offset_of!({s},{f})"),
            Some(&format!("offsetof({c_type}, {c_field})")),
            offset,
        );
        self.item(
            &format!("size_of({s}.{f})"),
            Some(&format!("sizeof{member}")),
            size,
        );
        self.item(
            &format!("signedness({s}.{f})"),
            Some(&format!("XTASK_SIGNEDNESS({member})")),
            signedness,
        );
        self
    }

    /// Adds a C scalar typedef mirrored by a Rust type: size, alignment, and the signedness of
    /// `signedness` (that of the Rust type's representation).
    pub fn typedef<T>(&mut self, rust_name: &str, c_type: &str, signedness: i8) -> &mut Self {
        self.size_align::<T>(rust_name, c_type);
        self.item(
            &format!("signedness({})", compact(rust_name)),
            Some(&format!("XTASK_SIGNEDNESS(*({c_type} *)0)")),
            signedness,
        );
        self
    }
}

/// Checks a `#[repr(C)]` struct against a C struct: size, alignment, and offset, size and
/// signedness of every listed field. A field whose C member is spelled differently is written
/// `rust_field = "c.member"`. Fields only the Rust side has (explicit padding) are left out;
/// the size check covers them.
///
/// ```ignore
/// abi_struct!(t, GnttabMapGrantRef = "struct gnttab_map_grant_ref" {
///     host_addr, flags, ref_ = "ref", dom, status, handle, dev_bus_addr,
/// });
/// ```
macro_rules! abi_struct {
    ($table:expr, $ty:ident = $c_type:literal { $($field:ident $(= $c_field:literal)?),* $(,)? }) => {{
        let table: &mut $crate::abi::table::AbiTable = $table;
        table.size_align::<$ty>(stringify!($ty), $c_type);
        $(
            table.field(
                stringify!($ty),
                $c_type,
                stringify!($field),
                $crate::abi::table::abi_struct!(@c_field $field $(= $c_field)?),
                $crate::abi::table::FieldLayout {
                    offset: core::mem::offset_of!($ty, $field),
                    size: $crate::abi::table::field_size(|s: &$ty| &s.$field),
                    signedness: $crate::abi::table::field_signedness(|s: &$ty| &s.$field),
                },
            );
        )*
    }};
    (@c_field $field:ident) => { stringify!($field) };
    (@c_field $field:ident = $c_field:literal) => { $c_field };
}
pub(crate) use abi_struct;

/// Checks a Rust newtype against a C scalar typedef: size, alignment, and the signedness of
/// its inner field.
///
/// ```ignore
/// typedef!(t, GrantRef.0 = "grant_ref_t");
/// ```
macro_rules! typedef {
    ($table:expr, $ty:ident . $inner:tt = $c_type:literal) => {{
        let table: &mut $crate::abi::table::AbiTable = $table;
        table.typedef::<$ty>(
            stringify!($ty),
            $c_type,
            $crate::abi::table::field_signedness(|s: &$ty| &s.$inner),
        );
    }};
}
pub(crate) use typedef;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy)]
    #[repr(C)]
    struct Inner {
        a: u8,
    }
    aggregate!(Inner);

    #[repr(C)]
    struct Outer {
        x: u16,
        y: i32,
        z: Inner,
        w: [u8; 3],
    }

    #[repr(transparent)]
    struct Wrapped(i16);

    #[test]
    fn struct_items_come_from_the_rust_layout() {
        let mut t = AbiTable::new("t");
        abi_struct!(&mut t, Outer = "struct outer" { x, y = "why", z, w });
        typedef!(&mut t, Wrapped.0 = "wrapped_t");
        let got: Vec<(&str, Option<&str>, i128)> = t
            .items
            .iter()
            .map(|i| (i.name.as_str(), i.c_expr.as_deref(), i.rust))
            .collect();
        let o = "(((struct outer *)0)->";
        let expected: Vec<(String, String, i128)> = vec![
            ("size_of::<Outer>".into(), "sizeof(struct outer)".into(), 12),
            (
                "align_of::<Outer>".into(),
                "_Alignof(struct outer)".into(),
                4,
            ),
            (
                "offset_of!(Outer,x)".into(),
                "offsetof(struct outer, x)".into(),
                0,
            ),
            ("size_of(Outer.x)".into(), format!("sizeof{o}x)"), 2),
            (
                "signedness(Outer.x)".into(),
                format!("XTASK_SIGNEDNESS({o}x))"),
                0,
            ),
            (
                "offset_of!(Outer,y)".into(),
                "offsetof(struct outer, why)".into(),
                4,
            ),
            ("size_of(Outer.y)".into(), format!("sizeof{o}why)"), 4),
            (
                "signedness(Outer.y)".into(),
                format!("XTASK_SIGNEDNESS({o}why))"),
                1,
            ),
            (
                "offset_of!(Outer,z)".into(),
                "offsetof(struct outer, z)".into(),
                8,
            ),
            ("size_of(Outer.z)".into(), format!("sizeof{o}z)"), 1),
            (
                "signedness(Outer.z)".into(),
                format!("XTASK_SIGNEDNESS({o}z))"),
                -1,
            ),
            (
                "offset_of!(Outer,w)".into(),
                "offsetof(struct outer, w)".into(),
                9,
            ),
            ("size_of(Outer.w)".into(), format!("sizeof{o}w)"), 3),
            (
                "signedness(Outer.w)".into(),
                format!("XTASK_SIGNEDNESS({o}w))"),
                -1,
            ),
            ("size_of::<Wrapped>".into(), "sizeof(wrapped_t)".into(), 2),
            (
                "align_of::<Wrapped>".into(),
                "_Alignof(wrapped_t)".into(),
                2,
            ),
            (
                "signedness(Wrapped)".into(),
                "XTASK_SIGNEDNESS(*(wrapped_t *)0)".into(),
                1,
            ),
        ];
        assert_eq!(got.len(), expected.len());
        for (g, (name, c, v)) in got.iter().zip(&expected) {
            assert_eq!(g.0, format!("t.{name}"));
            assert_eq!(g.1, Some(c.as_str()));
            assert_eq!(g.2, *v, "{name}");
        }
    }

    #[test]
    fn names_lose_whitespace() {
        let mut t = AbiTable::new("t");
        t.constant("op :: MAP", "GNTTABOP_map_grant_ref", 0u32)
            .constant("B", "FOO", true);
        t.item("Flags::X", None, -3i16);
        assert_eq!(t.items[0].name, "t.op::MAP");
        assert_eq!(t.items[1].rust, 1);
        assert_eq!(t.items[2].c_expr, None);
        assert_eq!(t.items[2].rust, -3);
    }
}
