//! A `newc` cpio writer: the initramfs format the Linux kernel unpacks (uncompressed, so no
//! cpio or gzip is needed on the host).

use std::io::{self, Write};

/// What one archive member is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A directory.
    Dir,
    /// A regular file with these contents and permission bits.
    File {
        /// Contents.
        data: Vec<u8>,
        /// Permission bits (`0o755`).
        perm: u32,
    },
    /// A symbolic link to this target.
    Symlink(String),
}

/// Writes members in order; [`Writer::finish`] appends the trailer.
pub struct Writer<W: Write> {
    out: W,
    ino: u32,
    written: u64,
}

impl<W: Write> Writer<W> {
    /// A writer into `out`.
    pub fn new(out: W) -> Self {
        Writer {
            out,
            ino: 1,
            written: 0,
        }
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let rem = (self.written % 4) as usize;
        if rem != 0 {
            self.put(&[0u8; 4][..4 - rem])?;
        }
        Ok(())
    }

    fn header(&mut self, name: &str, mode: u32, nlink: u32, size: usize) -> io::Result<()> {
        let fields = [
            self.ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            u32::try_from(size).map_err(|_| io::Error::other("file too large for cpio"))?,
            0,
            0,
            0,
            0,
            u32::try_from(name.len() + 1).map_err(|_| io::Error::other("name too long"))?,
            0, // check
        ];
        self.ino += 1;
        let mut h = String::from("070701");
        for f in fields {
            h.push_str(&format!("{f:08X}"));
        }
        self.put(h.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()
    }

    /// Adds `name` (a path relative to the archive root, without a leading `/`).
    pub fn add(&mut self, name: &str, entry: &Entry) -> io::Result<()> {
        match entry {
            Entry::Dir => self.header(name, 0o040_755, 2, 0),
            Entry::File { data, perm } => {
                self.header(name, 0o100_000 | (perm & 0o7777), 1, data.len())?;
                self.put(data)?;
                self.pad()
            }
            Entry::Symlink(target) => {
                self.header(name, 0o120_777, 1, target.len())?;
                self.put(target.as_bytes())?;
                self.pad()
            }
        }
    }

    /// Appends the trailer and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.header("TRAILER!!!", 0, 1, 0)?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_layout_is_padded_to_four_bytes() {
        let mut w = Writer::new(Vec::new());
        w.add("bin", &Entry::Dir).unwrap();
        w.add(
            "bin/x",
            &Entry::File {
                data: b"hello".to_vec(),
                perm: 0o755,
            },
        )
        .unwrap();
        w.add("sh", &Entry::Symlink("bin/x".into())).unwrap();
        let out = w.finish().unwrap();
        assert_eq!(out.len() % 4, 0);
        // First header: magic, ino 1, a directory.
        assert_eq!(&out[..6], b"070701");
        assert_eq!(&out[6..14], b"00000001");
        assert_eq!(&out[14..22], b"000041ED");
        // 110-byte header + "bin\0" = 114, padded to 116; the next header starts there.
        assert_eq!(&out[116..122], b"070701");
        // The file: mode 0100755, size 5, name "bin/x".
        assert_eq!(&out[116 + 14..116 + 22], b"000081ED");
        assert_eq!(&out[116 + 54..116 + 62], b"00000005");
        let body = 116 + 110 + 6; // "bin/x\0" = 6 bytes, 226+6 = 232, already aligned
        assert_eq!(&out[body..body + 5], b"hello");
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("TRAILER!!!"));
        assert!(text.contains("sh\0"));
    }
}
