//! The toolstack's part: creating and removing a device pair in xenstore as `xl`/libxl
//! does (`libxl__device_generic_add`).
//!
//! For a device of type `kind` (e.g. `vif`, `vbd`) with id `devid` between frontend domain
//! F and backend domain B, in one domain-0 transaction:
//!
//! * `/local/domain/F/device/<kind>/<devid>`, owned by F and readable by B: `backend`,
//!   `backend-id`, `state` = 1 (Initialising), plus the frontend keys (e.g. `mac`, `mtu`);
//! * `/local/domain/B/backend/<kind>/F/<devid>`, owned by B and readable by F: `frontend`,
//!   `frontend-id`, `online` = 1, `state` = 1, plus the backend keys (e.g. `mac`, `params`).

use crate::Host;
use xen_xenbus::path;
use xen_xenbus::{Domid, Perms, Tx, XenbusError, Xenstore, XenstoreExt, transact};

/// A device to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceSpec {
    /// Device type (`vif`, `vbd`, `vchan`, ...).
    pub kind: String,
    /// Device id.
    pub devid: u32,
    /// The frontend's domain.
    pub frontend: Domid,
    /// The backend's domain.
    pub backend: Domid,
    /// Extra keys in the frontend directory.
    pub front_keys: Vec<(String, String)>,
    /// Extra keys in the backend directory.
    pub back_keys: Vec<(String, String)>,
}

impl DeviceSpec {
    /// A device with no extra keys.
    pub fn new(kind: &str, devid: u32, frontend: Domid, backend: Domid) -> Self {
        DeviceSpec {
            kind: kind.to_owned(),
            devid,
            frontend,
            backend,
            front_keys: Vec::new(),
            back_keys: Vec::new(),
        }
    }

    /// Adds a frontend key.
    pub fn front_key(mut self, key: &str, value: &str) -> Self {
        self.front_keys.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Adds a backend key.
    pub fn back_key(mut self, key: &str, value: &str) -> Self {
        self.back_keys.push((key.to_owned(), value.to_owned()));
        self
    }

    /// The frontend directory.
    pub fn front_dir(&self) -> String {
        format!(
            "{}/device/{}/{}",
            path::home(self.frontend),
            self.kind,
            self.devid
        )
    }

    /// The backend directory.
    pub fn back_dir(&self) -> String {
        format!(
            "{}/backend/{}/{}/{}",
            path::home(self.backend),
            self.kind,
            self.frontend.0,
            self.devid
        )
    }
}

/// The toolstack (domain 0's view of xenstore).
#[derive(Debug)]
pub struct Toolstack {
    xs: crate::SimXenstore,
}

impl Toolstack {
    /// The toolstack of `host`, acting as domain 0 (which must exist).
    pub fn new(host: &Host) -> Option<Self> {
        host.domain(Domid::DOM0)
            .map(|d| Toolstack { xs: d.xenstore() })
    }

    /// Creates the device's two directories in one transaction.
    pub fn add_device(&self, spec: &DeviceSpec) -> Result<(), XenbusError> {
        let xs = &self.xs;
        let (fd, bd) = (spec.front_dir(), spec.back_dir());
        transact(xs, 8, |tx| {
            // Frontend directory: created by dom0, then handed to the frontend.
            let set = |p: &str, perms: &Perms| {
                xs.set_perms(tx, p, perms)
                    .map_err(|errno| XenbusError::Store {
                        op: "set_perms",
                        path: p.to_owned(),
                        errno,
                    })
            };
            let mkdir = |p: &str| {
                xs.mkdir(tx, p).map_err(|errno| XenbusError::Store {
                    op: "mkdir",
                    path: p.to_owned(),
                    errno,
                })
            };
            let fperms = Perms::shared_read(spec.frontend, spec.backend);
            let bperms = Perms::shared_read(spec.backend, spec.frontend);
            let bhome = format!("{}/backend", path::home(spec.backend));
            for p in [
                bhome.clone(),
                format!("{bhome}/{}", spec.kind),
                format!("{bhome}/{}/{}", spec.kind, spec.frontend.0),
            ] {
                mkdir(&p)?;
                set(&p, &Perms::shared_read(Domid::DOM0, spec.backend))?;
            }
            mkdir(&fd)?;
            set(&fd, &fperms)?;
            mkdir(&bd)?;
            set(&bd, &bperms)?;
            let mut front: Vec<(String, String)> = vec![
                ("backend".into(), bd.clone()),
                ("backend-id".into(), spec.backend.0.to_string()),
                ("state".into(), "1".into()),
            ];
            front.extend(spec.front_keys.iter().cloned());
            let mut back: Vec<(String, String)> = vec![
                ("frontend".into(), fd.clone()),
                ("frontend-id".into(), spec.frontend.0.to_string()),
                ("online".into(), "1".into()),
                ("state".into(), "1".into()),
            ];
            back.extend(spec.back_keys.iter().cloned());
            for (dir, keys, perms) in [(&fd, &front, &fperms), (&bd, &back, &bperms)] {
                for (k, v) in keys {
                    let p = path::join(dir, k);
                    xs.write_str(tx, &p, v)?;
                    set(&p, perms)?;
                }
            }
            Ok::<(), XenbusError>(())
        })
    }

    /// Removes both directories of a device (as `xl device-detach` finally does).
    pub fn remove_device(&self, spec: &DeviceSpec) -> Result<(), XenbusError> {
        for p in [spec.front_dir(), spec.back_dir()] {
            self.xs
                .rm(Tx::NONE, &p)
                .map_err(|errno| XenbusError::Store {
                    op: "rm",
                    path: p.clone(),
                    errno,
                })?;
        }
        Ok(())
    }

    /// Domain 0's xenstore connection.
    pub fn xenstore(&self) -> &crate::SimXenstore {
        &self.xs
    }
}
