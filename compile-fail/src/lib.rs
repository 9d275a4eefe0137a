//! Compile-fail proofs of the xen-* crates' type-level invariants (DESIGN.md, section 2).
//!
//! This crate has no code: it is a [trybuild] suite. `tests/compile_fail.rs` compiles every
//! file under `tests/ui/` and requires each to fail with exactly the error recorded in the
//! `.stderr` file beside it. Each case is one misuse; its opening comment names the invariant
//! it proves and why that compiler error is the guarantee. A case that starts compiling is a
//! hole in the API, never a reason to weaken the case.
//!
//! # Cases
//!
//! | file (`tests/ui/`) | misuse | invariant | error |
//! |---|---|---|---|
//! | `01_page_used_after_grant` | touch a page after granting it | 1 | E0382 |
//! | `02a_granted_page_field_is_private` | take the grant out of a `Granted` | 1 | E0616 |
//! | `02b_granted_cannot_be_destructured` | destructure a `Granted` | 1 | E0451 |
//! | `02c_granted_has_no_page_getter` | get the page without an end-access | 1 | E0599 |
//! | `03a_readonly_map_store_u8` | atomic store into a read-only foreign map | 3 | E0599 |
//! | `03b_readonly_map_write_bytes` | copy into a read-only foreign map | 3 | E0599 |
//! | `04a_map_mem_used_after_drop` | use a mapping's view after `drop(map)` | 3 | E0505 |
//! | `04b_map_mem_used_after_unmap` | use a mapping's view after `map.unmap()` | 3 | E0505 |
//! | `05_granted_clone` | clone a `Granted` | 1 | E0599 |
//! | `06a_still_in_use_is_not_a_page` | use a failed end-access as a page | 1 | E0277 |
//! | `06b_still_in_use_field_is_private` | dig the grant out of `StillInUse` | 1 | E0616 |
//! | `07a_owned_ref_clone` | clone an `OwnedRef` | 1, 2 (refs) | E0599 |
//! | `07b_owned_ref_freed_twice` | free an `OwnedRef` twice | 1, 2 (refs) | E0382 |
//! | `07c_owned_ref_cannot_be_forged` | build an `OwnedRef` by hand | 1, 2 (refs) | E0451 |
//! | `08a_access_is_sealed` | implement `Access` for a new type | 3 | E0277 |
//! | `08b_access_seal_is_private` | implement the seal itself | 3 | E0603 |
//! | `09a_shared_mem_outlives_region` | a `SharedMem` view outliving its region | 3, 7 | E0597 |
//! | `09b_page_view_outlives_page` | a page's view kept across its grant | 1, 7 | E0505 |
//! | `10_readonly_grant_is_not_writable` | a read-only grant used as a writable one | 3 | E0308 |
//! | `11_reclaim_queue_cannot_be_drained` | take grants out of the reclaim queue | 2 | E0624 |
//! | `12_raw_try_end_needs_the_typestate_token` | grant or end outside the typestate | 1, 2 | E0423 |
//!
//! The foreign-mapping cases (03, 04) are generic over `M: ForeignMapper`, so they hold for
//! every platform and need no simulator.
//!
//! # Toolchain
//!
//! Compiler messages change between Rust releases, so the `.stderr` expectations are written
//! against one toolchain: the `pinned-stable` of `[workspace.metadata]` in the workspace
//! `Cargo.toml` (currently rustc 1.95.0). Run the suite on that toolchain; after moving the
//! pin, regenerate with `TRYBUILD=overwrite cargo test -p compile-fail` and read every
//! `.stderr` to check that each case still fails for its intended reason (the error code in
//! the table above), not for an unrelated one.
//!
//! [trybuild]: https://docs.rs/trybuild
#![deny(unsafe_code)]
