//! The XenbusState handshake between a frontend and its backend, as reusable state machines
//! ([`FrontendMachine`], [`BackendMachine`]: pure, no I/O) and runners over any [`Xenstore`]
//! ([`Frontend`], [`Backend`]: bounded waits on a watch of the peer's `state`).
//!
//! ```text
//!  frontend                     backend
//!  Initialising                 (advertises features) InitWait
//!  (sees InitWait: ring refs, event channels and
//!   the new state in ONE transaction)
//!  Initialised (blkfront) or Connected (netfront)
//!                               (sees Initialised/Connected: reads them) Connected
//!  (sees Connected) Connected (blkfront only)
//!
//!  close from either side: the closer writes Closing; the other side answers
//!  (backend: Closing, frontend: Closed); the closer then writes Closed.
//! ```
//!
//! A peer that never answers gives [`HandshakeError::Timeout`], one whose `state` node
//! vanishes (domain destroyed) [`HandshakeError::PeerGone`], a garbage state
//! [`HandshakeError::Xenbus`] naming the path. Nothing waits without a deadline.

use crate::error::{HandshakeError, ParseErrorKind, XenbusError};
use crate::path;
use crate::state::XenbusState;
use crate::xenstore::{DEFAULT_TX_ATTEMPTS, Tx, Xenstore, XenstoreExt, transact};
use alloc::format;
use alloc::string::String;
use core::time::Duration;
use xen_gnttab::Domid;

/// What a machine asks its runner to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing until the peer's state changes.
    Wait,
    /// Write this side's details and then this state, in one transaction.
    Publish(XenbusState),
    /// Read the peer's details, then switch to this state (backend: Connected).
    ReadPeer(XenbusState),
    /// Write this state.
    Switch(XenbusState),
}

/// How a frontend announces that its ring is ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrontendKind {
    /// netfront: writes Connected together with its keys (skips Initialised).
    SkipsInitialised,
    /// blkfront: writes Initialised with its keys, Connected once the backend is.
    UsesInitialised,
}

/// Phases of either machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Not started (backend: features not yet advertised).
    Start,
    /// Waiting for the peer to become ready (frontend: backend InitWait; backend: frontend
    /// Initialised/Connected).
    AwaitPeer,
    /// Frontend: keys published, waiting for the backend to connect.
    Published,
    /// Connected: I/O may flow.
    Connected,
    /// This side wrote Closing and waits for the peer.
    Closing,
    /// This side wrote Closed.
    Closed,
}

impl Phase {
    /// The phase's name.
    pub const fn name(self) -> &'static str {
        match self {
            Phase::Start => "Start",
            Phase::AwaitPeer => "AwaitPeer",
            Phase::Published => "Published",
            Phase::Connected => "Connected",
            Phase::Closing => "Closing",
            Phase::Closed => "Closed",
        }
    }
}

/// A frontend's handshake, without I/O: feed it the backend's state, do what it says.
#[derive(Clone, Debug)]
pub struct FrontendMachine {
    kind: FrontendKind,
    phase: Phase,
}

impl FrontendMachine {
    /// A frontend in state Initialising.
    pub fn new(kind: FrontendKind) -> Self {
        FrontendMachine {
            kind,
            phase: Phase::AwaitPeer,
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The backend is in `backend`: what to do.
    pub fn step(&mut self, backend: XenbusState) -> Result<Action, HandshakeError> {
        use XenbusState as S;
        let closing = backend.is_closing_or_closed();
        Ok(match self.phase {
            Phase::Start | Phase::AwaitPeer if backend == S::InitWait => {
                self.phase = Phase::Published;
                Action::Publish(match self.kind {
                    FrontendKind::SkipsInitialised => S::Connected,
                    FrontendKind::UsesInitialised => S::Initialised,
                })
            }
            Phase::Start | Phase::AwaitPeer | Phase::Published if closing => {
                // Answer the close; the runner reports the failed connect.
                self.phase = Phase::Closed;
                Action::Switch(S::Closed)
            }
            Phase::Published if backend == S::Connected => {
                self.phase = Phase::Connected;
                match self.kind {
                    FrontendKind::SkipsInitialised => Action::Wait,
                    FrontendKind::UsesInitialised => Action::Switch(S::Connected),
                }
            }
            Phase::Connected | Phase::Closing if closing => {
                self.phase = Phase::Closed;
                Action::Switch(S::Closed)
            }
            _ => Action::Wait,
        })
    }

    /// Starts an orderly close from this side.
    pub fn close(&mut self) -> Result<Action, HandshakeError> {
        match self.phase {
            Phase::Closed => Err(HandshakeError::WrongPhase { phase: "Closed" }),
            _ => {
                self.phase = Phase::Closing;
                Ok(Action::Switch(XenbusState::Closing))
            }
        }
    }
}

/// A backend's handshake, without I/O.
#[derive(Clone, Debug)]
pub struct BackendMachine {
    phase: Phase,
}

impl Default for BackendMachine {
    fn default() -> Self {
        Self::new()
    }
}

impl BackendMachine {
    /// A backend that has not advertised its features yet.
    pub fn new() -> Self {
        BackendMachine {
            phase: Phase::Start,
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The frontend is in `frontend`: what to do.
    pub fn step(&mut self, frontend: XenbusState) -> Result<Action, HandshakeError> {
        use XenbusState as S;
        Ok(match (self.phase, frontend) {
            (Phase::Start, _) => {
                self.phase = Phase::AwaitPeer;
                Action::Publish(S::InitWait)
            }
            (Phase::AwaitPeer, S::Initialised | S::Connected) => {
                self.phase = Phase::Connected;
                Action::ReadPeer(S::Connected)
            }
            (Phase::AwaitPeer | Phase::Connected, S::Closing) => {
                self.phase = Phase::Closing;
                Action::Switch(S::Closing)
            }
            (Phase::AwaitPeer | Phase::Connected | Phase::Closing, S::Closed) => {
                self.phase = Phase::Closed;
                Action::Switch(S::Closed)
            }
            _ => Action::Wait,
        })
    }

    /// Starts an orderly close from this side.
    pub fn close(&mut self) -> Result<Action, HandshakeError> {
        match self.phase {
            Phase::Closed => Err(HandshakeError::WrongPhase { phase: "Closed" }),
            _ => {
                self.phase = Phase::Closing;
                Ok(Action::Switch(XenbusState::Closing))
            }
        }
    }
}

/// Where a device's two halves live in xenstore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceLink {
    /// This side's directory (absolute).
    pub own_dir: String,
    /// The peer's directory (absolute), as read from our directory.
    pub peer_dir: String,
    /// The peer's domain.
    pub peer: Domid,
}

/// Longest device directory path accepted from xenstore.
pub const MAX_DIR_LEN: usize = 256;

impl DeviceLink {
    fn read(
        xs: &(impl Xenstore + ?Sized),
        dir: &str,
        peer_key: &str,
        id_key: &str,
    ) -> Result<Self, XenbusError> {
        let own_dir = if dir.starts_with('/') {
            String::from(dir)
        } else {
            path::join(&path::home(xs.domid()), dir)
        };
        let key = path::join(&own_dir, peer_key);
        let peer_dir = xs.read_abs_path(Tx::NONE, &key)?;
        if peer_dir.len() > MAX_DIR_LEN {
            return Err(XenbusError::Parse {
                path: key,
                kind: ParseErrorKind::TooLong {
                    len: peer_dir.len(),
                    max: MAX_DIR_LEN,
                },
            });
        }
        let peer = xs.read_domid(Tx::NONE, &path::join(&own_dir, id_key))?;
        Ok(DeviceLink {
            own_dir,
            peer_dir,
            peer,
        })
    }

    /// A frontend's link: reads `backend` and `backend-id` from `dir` (e.g. `device/vif/0`).
    pub fn frontend(xs: &(impl Xenstore + ?Sized), dir: &str) -> Result<Self, XenbusError> {
        Self::read(xs, dir, "backend", "backend-id")
    }

    /// A backend's link: reads `frontend` and `frontend-id` from `dir`.
    pub fn backend(xs: &(impl Xenstore + ?Sized), dir: &str) -> Result<Self, XenbusError> {
        Self::read(xs, dir, "frontend", "frontend-id")
    }

    /// This side's `state` path.
    pub fn own_state(&self) -> String {
        path::join(&self.own_dir, "state")
    }

    /// The peer's `state` path.
    pub fn peer_state(&self) -> String {
        path::join(&self.peer_dir, "state")
    }

    /// Reads the peer's state: a vanished node is [`HandshakeError::PeerGone`].
    pub fn read_peer_state(
        &self,
        xs: &(impl Xenstore + ?Sized),
    ) -> Result<XenbusState, HandshakeError> {
        let p = self.peer_state();
        match xs.read_state(Tx::NONE, &p) {
            Err(XenbusError::Parse {
                kind: ParseErrorKind::Missing,
                path,
            }) => Err(HandshakeError::PeerGone {
                peer: self.peer,
                path,
            }),
            r => Ok(r?),
        }
    }
}

/// The part both runners share: a link, a watch on the peer's state, a deadline loop.
struct Engine<X: Xenstore> {
    xs: X,
    link: DeviceLink,
    token: String,
    last_peer: Option<XenbusState>,
}

impl<X: Xenstore> Engine<X> {
    fn new(xs: X, link: DeviceLink, side: &str) -> Result<Self, XenbusError> {
        let token = format!("xenbus-{side}:{}", link.own_dir);
        let peer_state = link.peer_state();
        xs.watch(&peer_state, &token)
            .map_err(|errno| XenbusError::Store {
                op: "watch",
                path: peer_state,
                errno,
            })?;
        Ok(Engine {
            xs,
            link,
            token,
            last_peer: None,
        })
    }

    fn switch(&self, state: XenbusState) -> Result<(), HandshakeError> {
        Ok(self
            .xs
            .write_state(Tx::NONE, &self.link.own_state(), state)?)
    }

    fn publish(
        &self,
        state: XenbusState,
        body: &mut dyn FnMut(&X, Tx, &str) -> Result<(), XenbusError>,
    ) -> Result<(), HandshakeError> {
        let own_state = self.link.own_state();
        transact(&self.xs, DEFAULT_TX_ATTEMPTS, |tx| {
            body(&self.xs, tx, &self.link.own_dir)?;
            self.xs.write_state(tx, &own_state, state)
        })?;
        Ok(())
    }

    /// Steps `machine` on the peer's state until `done`, waiting on the watch in between,
    /// for at most `timeout` in all. `act` performs every action but `Wait`.
    fn run(
        &mut self,
        timeout: Duration,
        waiting_for: &'static str,
        step: &mut dyn FnMut(XenbusState) -> Result<Action, HandshakeError>,
        done: &dyn Fn() -> bool,
        act: &mut dyn FnMut(&Self, Action) -> Result<(), HandshakeError>,
    ) -> Result<(), HandshakeError> {
        let start = self.xs.now();
        loop {
            // Drain hints already queued: the state read below supersedes them.
            while self.poll_event()? {}
            let peer = self.link.read_peer_state(&self.xs)?;
            self.last_peer = Some(peer);
            let action = step(peer)?;
            if action != Action::Wait {
                act(self, action)?;
                // Reached the goal with this action: stop before reading the peer again, so
                // that a peer moving on at once (a frontend closing right after we connected)
                // is handled by the next call, not reported as a failure of this one.
                if done() {
                    return Ok(());
                }
                // Each action advances the machine's phase, so this loop is finite.
                continue;
            }
            if done() {
                return Ok(());
            }
            let elapsed = self.xs.now().saturating_sub(start);
            let Some(left) = timeout.checked_sub(elapsed).filter(|d| !d.is_zero()) else {
                return Err(HandshakeError::Timeout {
                    waiting_for,
                    peer: self.last_peer,
                    timeout,
                });
            };
            self.xs
                .wait_watch(left)
                .map_err(|errno| XenbusError::Store {
                    op: "wait_watch",
                    path: self.link.peer_state(),
                    errno,
                })?;
        }
    }

    fn poll_event(&self) -> Result<bool, HandshakeError> {
        match self.xs.poll_watch() {
            Ok(e) => Ok(e.is_some()),
            Err(errno) => Err(XenbusError::Store {
                op: "poll_watch",
                path: self.link.peer_state(),
                errno,
            }
            .into()),
        }
    }
}

impl<X: Xenstore> Drop for Engine<X> {
    fn drop(&mut self) {
        // Best effort: a connection that is already gone has no watch left.
        let _ = self.xs.unwatch(&self.link.peer_state(), &self.token);
    }
}

/// A frontend's handshake over xenstore.
pub struct Frontend<X: Xenstore> {
    engine: Engine<X>,
    machine: FrontendMachine,
}

impl<X: Xenstore> Frontend<X> {
    /// Starts watching the backend's state. `link` usually comes from
    /// [`DeviceLink::frontend`].
    pub fn new(xs: X, link: DeviceLink, kind: FrontendKind) -> Result<Self, XenbusError> {
        Ok(Frontend {
            engine: Engine::new(xs, link, "front")?,
            machine: FrontendMachine::new(kind),
        })
    }

    /// The link to the backend.
    pub fn link(&self) -> &DeviceLink {
        &self.engine.link
    }

    /// The xenstore connection.
    pub fn xenstore(&self) -> &X {
        &self.engine.xs
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.machine.phase()
    }

    /// Connects: waits for the backend's InitWait, then runs `publish` (which writes the
    /// ring references and event channels under the directory it is given, through the
    /// transaction it is given) and writes Initialised or Connected in the same transaction,
    /// retried on conflict; then waits for the backend's Connected. At most `timeout` in all.
    pub fn connect(
        &mut self,
        timeout: Duration,
        mut publish: impl FnMut(&X, Tx, &str) -> Result<(), XenbusError>,
    ) -> Result<(), HandshakeError> {
        let machine = core::cell::RefCell::new(&mut self.machine);
        self.engine.run(
            timeout,
            "connect",
            &mut |s| machine.borrow_mut().step(s),
            &|| machine.borrow().phase() == Phase::Connected,
            &mut |e, a| match a {
                Action::Publish(s) => e.publish(s, &mut publish),
                Action::Switch(XenbusState::Closed) => {
                    // The backend closed while we were connecting: we answered Closed.
                    e.switch(XenbusState::Closed)?;
                    Err(HandshakeError::PeerClosed {
                        state: e.last_peer.unwrap_or(XenbusState::Closed),
                    })
                }
                Action::Switch(s) => e.switch(s),
                _ => Ok(()),
            },
        )
    }

    /// Processes backend state changes without blocking; answers a backend close with
    /// Closed. Returns the phase afterwards.
    pub fn poll_peer(&mut self) -> Result<Phase, HandshakeError> {
        if !self.engine.poll_event()? {
            return Ok(self.machine.phase());
        }
        self.wait_for(Duration::ZERO, |_| true)
    }

    /// Closes from this side: Closing, then Closed once the backend has answered.
    pub fn close(&mut self, timeout: Duration) -> Result<(), HandshakeError> {
        let a = self.machine.close()?;
        if let Action::Switch(s) = a {
            self.engine.switch(s)?;
        }
        self.wait_for(timeout, |p| p == Phase::Closed).map(|_| ())
    }

    /// Waits until the backend has closed the device (and this side answered Closed).
    pub fn wait_closed(&mut self, timeout: Duration) -> Result<(), HandshakeError> {
        self.wait_for(timeout, |p| p == Phase::Closed).map(|_| ())
    }

    fn wait_for(
        &mut self,
        timeout: Duration,
        until: impl Fn(Phase) -> bool,
    ) -> Result<Phase, HandshakeError> {
        wait_for(&mut self.engine, &mut self.machine, timeout, until)
    }
}

/// What the runners need of a state machine once connected: step on a peer state, and say
/// the phase.
trait Machine {
    fn step(&mut self, peer: XenbusState) -> Result<Action, HandshakeError>;
    fn phase(&self) -> Phase;
}

impl Machine for FrontendMachine {
    fn step(&mut self, peer: XenbusState) -> Result<Action, HandshakeError> {
        FrontendMachine::step(self, peer)
    }
    fn phase(&self) -> Phase {
        FrontendMachine::phase(self)
    }
}

impl Machine for BackendMachine {
    fn step(&mut self, peer: XenbusState) -> Result<Action, HandshakeError> {
        BackendMachine::step(self, peer)
    }
    fn phase(&self) -> Phase {
        BackendMachine::phase(self)
    }
}

/// Runs `machine` on the peer's state changes until `until` holds for its phase (used for
/// closing, where the only action is switching our own state; anything else, such as a peer
/// going back to Initialised, is ignored rather than re-read). A zero timeout polls once and
/// returns the phase reached instead of a timeout.
fn wait_for<X: Xenstore, M: Machine>(
    engine: &mut Engine<X>,
    machine: &mut M,
    timeout: Duration,
    until: impl Fn(Phase) -> bool,
) -> Result<Phase, HandshakeError> {
    let machine = core::cell::RefCell::new(machine);
    let r = engine.run(
        timeout,
        "close",
        &mut |s| machine.borrow_mut().step(s),
        &|| until(machine.borrow().phase()),
        &mut |e, a| match a {
            Action::Switch(s) => e.switch(s),
            _ => Ok(()),
        },
    );
    let phase = machine.borrow().phase();
    match r {
        Err(HandshakeError::Timeout { .. }) if timeout.is_zero() => Ok(phase),
        r => r.map(|()| phase),
    }
}

/// A backend's handshake over xenstore.
pub struct Backend<X: Xenstore> {
    engine: Engine<X>,
    machine: BackendMachine,
}

impl<X: Xenstore> Backend<X> {
    /// Starts watching the frontend's state. `link` usually comes from
    /// [`DeviceLink::backend`].
    pub fn new(xs: X, link: DeviceLink) -> Result<Self, XenbusError> {
        Ok(Backend {
            engine: Engine::new(xs, link, "back")?,
            machine: BackendMachine::new(),
        })
    }

    /// The link to the frontend.
    pub fn link(&self) -> &DeviceLink {
        &self.engine.link
    }

    /// The xenstore connection.
    pub fn xenstore(&self) -> &X {
        &self.engine.xs
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.machine.phase()
    }

    /// Connects: runs `advertise` (features, under our directory) and writes InitWait in one
    /// transaction; waits for the frontend's Initialised or Connected; runs `read_frontend`
    /// on the frontend's directory (its values are untrusted: parse them with
    /// [`XenstoreExt`]); writes Connected and returns what it read. If `read_frontend` fails
    /// the backend writes Closing and returns the error. At most `timeout` in all.
    pub fn connect<T>(
        &mut self,
        timeout: Duration,
        mut advertise: impl FnMut(&X, Tx, &str) -> Result<(), XenbusError>,
        mut read_frontend: impl FnMut(&X, &str) -> Result<T, XenbusError>,
    ) -> Result<T, HandshakeError> {
        let mut got = None;
        let machine = core::cell::RefCell::new(&mut self.machine);
        self.engine.run(
            timeout,
            "connect",
            &mut |s| machine.borrow_mut().step(s),
            &|| machine.borrow().phase() == Phase::Connected,
            &mut |e, a| match a {
                Action::Publish(s) => e.publish(s, &mut advertise),
                Action::ReadPeer(s) => match read_frontend(&e.xs, &e.link.peer_dir) {
                    Ok(v) => {
                        got = Some(v);
                        e.switch(s)
                    }
                    Err(err) => {
                        // Tell the frontend; the error we return is the real news.
                        let _ = e.switch(XenbusState::Closing);
                        Err(err.into())
                    }
                },
                Action::Switch(s) => {
                    // Only a frontend closing makes the machine switch while connecting.
                    e.switch(s)?;
                    Err(HandshakeError::PeerClosed {
                        state: e.last_peer.unwrap_or(XenbusState::Closing),
                    })
                }
                Action::Wait => Ok(()),
            },
        )?;
        got.ok_or(HandshakeError::WrongPhase {
            phase: machine.borrow().phase().name(),
        })
    }

    /// Processes frontend state changes without blocking (a frontend closing is answered with
    /// Closing, then Closed). Returns the phase afterwards.
    pub fn poll_peer(&mut self) -> Result<Phase, HandshakeError> {
        if !self.engine.poll_event()? {
            return Ok(self.machine.phase());
        }
        self.wait_for(Duration::ZERO, |_| true)
    }

    /// Closes from this side: Closing, then Closed once the frontend is Closed.
    pub fn close(&mut self, timeout: Duration) -> Result<(), HandshakeError> {
        let a = self.machine.close()?;
        if let Action::Switch(s) = a {
            self.engine.switch(s)?;
        }
        self.wait_closed(timeout)
    }

    /// Waits until the device is closed (the frontend closed it, or our close completed).
    pub fn wait_closed(&mut self, timeout: Duration) -> Result<(), HandshakeError> {
        self.wait_for(timeout, |p| p == Phase::Closed).map(|_| ())
    }

    fn wait_for(
        &mut self,
        timeout: Duration,
        until: impl Fn(Phase) -> bool,
    ) -> Result<Phase, HandshakeError> {
        wait_for(&mut self.engine, &mut self.machine, timeout, until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use XenbusState as S;

    #[test]
    fn netfront_skips_initialised() {
        let mut f = FrontendMachine::new(FrontendKind::SkipsInitialised);
        assert_eq!(f.step(S::Initialising).unwrap(), Action::Wait);
        assert_eq!(f.step(S::InitWait).unwrap(), Action::Publish(S::Connected));
        assert_eq!(f.step(S::InitWait).unwrap(), Action::Wait);
        assert_eq!(f.step(S::Connected).unwrap(), Action::Wait);
        assert_eq!(f.phase(), Phase::Connected);
        assert_eq!(f.step(S::Closing).unwrap(), Action::Switch(S::Closed));
        assert_eq!(f.phase(), Phase::Closed);
    }

    #[test]
    fn blkfront_uses_initialised() {
        let mut f = FrontendMachine::new(FrontendKind::UsesInitialised);
        assert_eq!(
            f.step(S::InitWait).unwrap(),
            Action::Publish(S::Initialised)
        );
        assert_eq!(f.step(S::Connected).unwrap(), Action::Switch(S::Connected));
        assert_eq!(f.close().unwrap(), Action::Switch(S::Closing));
        assert_eq!(f.step(S::Connected).unwrap(), Action::Wait);
        assert_eq!(f.step(S::Closing).unwrap(), Action::Switch(S::Closed));
        assert!(f.close().is_err());
    }

    #[test]
    fn frontend_answers_a_backend_closing_while_connecting() {
        let mut f = FrontendMachine::new(FrontendKind::UsesInitialised);
        assert_eq!(f.step(S::Closed).unwrap(), Action::Switch(S::Closed));
        assert_eq!(f.phase(), Phase::Closed);
        let mut f = FrontendMachine::new(FrontendKind::UsesInitialised);
        f.step(S::InitWait).unwrap();
        assert_eq!(f.step(S::Closing).unwrap(), Action::Switch(S::Closed));
    }

    #[test]
    fn backend_machine() {
        let mut b = BackendMachine::new();
        assert_eq!(
            b.step(S::Initialising).unwrap(),
            Action::Publish(S::InitWait)
        );
        assert_eq!(b.step(S::Initialising).unwrap(), Action::Wait);
        assert_eq!(
            b.step(S::Initialised).unwrap(),
            Action::ReadPeer(S::Connected)
        );
        assert_eq!(b.step(S::Connected).unwrap(), Action::Wait);
        assert_eq!(b.step(S::Closing).unwrap(), Action::Switch(S::Closing));
        assert_eq!(b.step(S::Closing).unwrap(), Action::Wait);
        assert_eq!(b.step(S::Closed).unwrap(), Action::Switch(S::Closed));
        assert_eq!(b.phase(), Phase::Closed);
        let mut b = BackendMachine::new();
        b.step(S::Initialising).unwrap();
        assert_eq!(
            b.step(S::Connected).unwrap(),
            Action::ReadPeer(S::Connected)
        );
        assert_eq!(b.close().unwrap(), Action::Switch(S::Closing));
        assert_eq!(b.step(S::Connected).unwrap(), Action::Wait);
        assert_eq!(b.step(S::Closed).unwrap(), Action::Switch(S::Closed));
    }
}
