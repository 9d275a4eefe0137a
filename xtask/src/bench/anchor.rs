//! The C anchors of the benchmarks: compiled here with `cc -O2` into a shared object and
//! loaded into this process with `dlopen`, so ours and C run in the same process, interleaved.

use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Compiles `xtask/c/<name>.c` into `target/xtask-bench/lib<name>.so`.
pub fn build(name: &str) -> Result<PathBuf, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let dir = root.join("target").join("xtask-bench");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let so = dir.join(format!("lib{name}.so"));
    let src = root.join("xtask").join("c").join(format!("{name}.c"));
    let status = Command::new("cc")
        .args([
            "-O2", "-Wall", "-Werror", "-shared", "-fPIC", "-pthread", "-o",
        ])
        .arg(&so)
        .arg(&src)
        .status()
        .map_err(|e| format!("running cc: {e}"))?;
    if !status.success() {
        return Err(format!("cc failed on {}", src.display()));
    }
    Ok(so)
}

/// The only `dlopen` of the xtask.
#[allow(unsafe_code)]
mod dl {
    use std::ffi::{CStr, CString, c_char, c_int, c_void};
    use std::path::Path;

    unsafe extern "C" {
        fn dlopen(filename: *const c_char, flag: c_int) -> *mut c_void;
        fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
        fn dlerror() -> *const c_char;
    }
    const RTLD_NOW: c_int = 2;

    fn last_error() -> String {
        // SAFETY: dlerror returns null or a NUL-terminated string valid until the next dl*
        // call on this thread; we copy it at once.
        let e = unsafe { dlerror() };
        if e.is_null() {
            "unknown dl error".into()
        } else {
            // SAFETY: non-null, NUL-terminated (see above).
            unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
        }
    }

    /// The address of `symbol` in the shared object at `path`, loaded for the life of the
    /// process (never closed).
    pub fn symbol(path: &Path, symbol: &CStr) -> Result<*mut c_void, String> {
        let p = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
        // SAFETY: `p` is a valid NUL-terminated path; the libraries we build have no
        // initialisers with preconditions.
        let h = unsafe { dlopen(p.as_ptr(), RTLD_NOW) };
        if h.is_null() {
            return Err(last_error());
        }
        // SAFETY: `h` is a live handle (never closed); the name is NUL-terminated.
        let sym = unsafe { dlsym(h, symbol.as_ptr()) };
        if sym.is_null() {
            return Err(last_error());
        }
        Ok(sym)
    }
}

/// Loads `symbol` from the shared object at `path` as a function pointer of type `F`.
///
/// # Safety
///
/// `F` must be an `unsafe extern "C" fn` type whose signature is exactly the C definition of
/// `symbol` in that object.
#[allow(unsafe_code)]
pub unsafe fn load<F: Copy>(path: &Path, symbol: &CStr) -> Result<F, String> {
    const {
        assert!(core::mem::size_of::<F>() == core::mem::size_of::<*mut core::ffi::c_void>());
    }
    let sym = dl::symbol(path, symbol)?;
    // SAFETY: `F` is a function pointer type of the symbol's exact signature (the caller's
    // contract; same size checked above); the library stays loaded for the life of the process.
    Ok(unsafe { std::mem::transmute_copy::<*mut core::ffi::c_void, F>(&sym) })
}
