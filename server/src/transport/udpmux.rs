//! One UDP port for every WebRTC connection (`--rtc-udp 0.0.0.0:7882`): a shared socket per
//! local IP, demultiplexed to connections, as pion's UDPMux and LiveKit's single port do.
//!
//! The `webrtc` crate (0.21) binds sockets per connection and hands each to its runtime to
//! wrap. [`MuxRuntime`] is that runtime for one connection: it keeps the connection's own
//! socket only as its identity (the address its ICE agent knows as the host candidate) and
//! returns a [`MuxSocket`] that sends through the shared socket and receives what the shared
//! socket's reader routes to it. Host candidates in our SDP are rewritten to the shared port
//! ([`UdpMux::announce_port`]), so peers only ever talk to that port.
//!
//! Routing a datagram from remote address R that arrived on the shared socket of local IP L:
//! 1. (L, R) already belongs to a connection: there.
//! 2. A STUN Binding request whose USERNAME starts with a connection's ICE ufrag (each
//!    connection gets its own, set through the setting engine): there, and (L, R) is
//!    remembered. Connectivity checks always come first, so DTLS and SRTP from R follow.
//! 3. Otherwise it is dropped and counted (`mcu_udp_mux_dropped_total{reason="unroutable"}`).
//!
//! A connection's sends also claim their destination (STUN/TURN servers answer that way).
//! Dropping the connection's sockets forgets its routes.

use std::{
    collections::{HashMap, VecDeque},
    fmt,
    future::Future,
    io::{self, IoSliceMut},
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::{
        Arc, Weak,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use parking_lot::Mutex;

use mcu_sfu::stun::stun_request_ufrag;
use webrtc::runtime::{AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, RecvMeta, Runtime, Transmit};

/// Datagrams queued per connection socket before the reader drops them.
const INBOX: usize = 2048;
/// The largest datagram read (a full Ethernet MTU and then some).
const MAX_DATAGRAM: usize = 2048;
/// Kernel send and receive buffer of a shared socket (capped by net.core.[rw]mem_max).
const SHARED_BUFFER: usize = 4 << 20;

/// The shared sockets and the routing table.
pub struct UdpMux {
    port: u16,
    shared: Mutex<HashMap<IpAddr, Arc<tokio::net::UdpSocket>>>,
    routes: Mutex<Routes>,
    next_slot: AtomicU64,
    /// Datagrams no connection claimed.
    pub unroutable: AtomicU64,
    /// Datagrams dropped because a connection did not read fast enough.
    pub overflow: AtomicU64,
}

#[derive(Default)]
struct Routes {
    /// ICE ufrag → connection.
    ufrags: HashMap<String, u64>,
    /// (local IP, remote) → connection socket.
    remotes: HashMap<(IpAddr, SocketAddr), Weak<Inbox>>,
    /// Connection → its sockets' inboxes by local IP.
    slots: HashMap<u64, HashMap<IpAddr, Weak<Inbox>>>,
    /// The per-connection addresses (what the ICE agent names as host candidates) → the
    /// shared port's address that replaces them in SDP.
    identities: HashMap<SocketAddr, SocketAddr>,
}

impl fmt::Debug for UdpMux {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpMux").field("port", &self.port).finish_non_exhaustive()
    }
}

/// Where a connection's DTLS and SRTP go: the shared socket and the peer's address of the
/// candidate pair in use, as the last DTLS or SRTP datagram either way named them (the
/// connection's sends, and its peer's, which a viewer sends at least with each receiver
/// report). The direct send path (`fastpath`) sends there.
#[derive(Default)]
pub struct MediaRoute(Mutex<Option<(Arc<tokio::net::UdpSocket>, SocketAddr)>>);

impl MediaRoute {
    /// The socket and destination, once the connection has sent DTLS or SRTP.
    pub fn get(&self) -> Option<(Arc<tokio::net::UdpSocket>, SocketAddr)> {
        self.0.lock().clone()
    }

    /// Sets the route as a DTLS send to `to` would.
    #[cfg(test)]
    pub fn note_for_test(&self, shared: &Arc<tokio::net::UdpSocket>, to: SocketAddr) {
        self.note(22, shared, to);
    }

    /// Sends `data` there now (non-blocking; an error when there is no route yet or the
    /// socket's buffer is full).
    pub fn send(&self, data: &[u8]) -> io::Result<usize> {
        let r = self.0.lock();
        let (socket, dest) = r.as_ref().ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "no media route yet"))?;
        send_now(socket, data, *dest)
    }

    /// Notes a DTLS (first byte 20–63) or SRTP/SRTCP (128–191) datagram between `shared` and
    /// `to`, either way. STUN is ignored (connectivity checks go to every candidate), and so is
    /// TURN channel data (64–79): media relayed through a TURN server is not ours to send.
    fn note(&self, first_byte: u8, shared: &Arc<tokio::net::UdpSocket>, to: SocketAddr) {
        if !(20..=63).contains(&first_byte) && !(128..=191).contains(&first_byte) {
            return;
        }
        let mut r = self.0.lock();
        if !r.as_ref().is_some_and(|(s, d)| *d == to && Arc::ptr_eq(s, shared)) {
            *r = Some((shared.clone(), to));
        }
    }
}

/// What one connection socket receives.
struct Inbox {
    slot: u64,
    local_ip: IpAddr,
    queue: Mutex<Queue>,
    /// The connection's media route, which its peer's DTLS and SRTP also update.
    route: Arc<MediaRoute>,
}

/// Datagrams waiting (with their sender), and the reader to wake.
type Queue = (VecDeque<(Vec<u8>, SocketAddr)>, Option<Waker>);

impl UdpMux {
    /// A mux on `port` (not 0); shared sockets are bound per local IP on first use.
    pub fn new(port: u16) -> Arc<UdpMux> {
        assert_ne!(port, 0, "a mux needs a fixed port");
        Arc::new(UdpMux {
            port,
            shared: Mutex::default(),
            routes: Mutex::default(),
            next_slot: AtomicU64::new(1),
            unroutable: AtomicU64::new(0),
            overflow: AtomicU64::new(0),
        })
    }

    /// The shared port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Binds the shared socket of `ip` now (at start-up, so a port in use is an error then).
    pub fn bind(self: &Arc<Self>, ip: IpAddr) -> io::Result<()> {
        self.shared_socket(ip).map(|_| ())
    }

    fn shared_socket(self: &Arc<Self>, ip: IpAddr) -> io::Result<Arc<tokio::net::UdpSocket>> {
        let mut shared = self.shared.lock();
        if let Some(s) = shared.get(&ip) {
            return Ok(s.clone());
        }
        // Every connection's traffic crosses this one socket: kernel buffers as large as the
        // system allows (up to 4 MiB) absorb the bursts of hundreds of peers.
        let addr = SocketAddr::new(ip, self.port);
        let sock = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
        let _ = sock.set_recv_buffer_size(SHARED_BUFFER);
        let _ = sock.set_send_buffer_size(SHARED_BUFFER);
        sock.bind(&addr.into())?;
        sock.set_nonblocking(true)?;
        if let Err(e) = dont_fragment(&sock, addr.is_ipv4()) {
            tracing::debug!(error = %e, "shared UDP socket: IP_MTU_DISCOVER not set");
        }
        let std: std::net::UdpSocket = sock.into();
        let socket = Arc::new(tokio::net::UdpSocket::from_std(std)?);
        shared.insert(ip, socket.clone());
        tracing::info!(addr = %SocketAddr::new(ip, self.port), "WebRTC UDP port shared by every connection");
        tokio::spawn(read_loop(Arc::downgrade(self), socket.clone(), ip));
        Ok(socket)
    }

    /// A new connection's slot, with the ICE ufrag its setting engine was given.
    fn slot(&self, ufrag: &str) -> u64 {
        let slot = self.next_slot.fetch_add(1, Ordering::Relaxed);
        let mut r = self.routes.lock();
        r.ufrags.insert(ufrag.to_string(), slot);
        r.slots.insert(slot, HashMap::new());
        slot
    }

    fn release(&self, slot: u64) {
        let mut r = self.routes.lock();
        r.ufrags.retain(|_, s| *s != slot);
        r.slots.remove(&slot);
        r.remotes.retain(|_, inbox| inbox.upgrade().is_some_and(|i| i.slot != slot));
    }

    /// Where a datagram from `from` to local `ip` goes.
    fn route(&self, ip: IpAddr, from: SocketAddr, data: &[u8]) -> Option<Arc<Inbox>> {
        let mut r = self.routes.lock();
        if let Some(inbox) = r.remotes.get(&(ip, from)).and_then(Weak::upgrade) {
            return Some(inbox);
        }
        let ufrag = stun_request_ufrag(data)?;
        let slot = *r.ufrags.get(ufrag)?;
        let inbox = r.slots.get(&slot)?.get(&ip)?.upgrade()?;
        r.remotes.insert((ip, from), Arc::downgrade(&inbox));
        Some(inbox)
    }

    /// The port to announce for a host candidate at `addr` (a connection's own socket), if
    /// the mux serves it.
    pub fn announce_port(&self, addr: SocketAddr) -> Option<u16> {
        self.routes.lock().identities.get(&addr).map(|a| a.port())
    }

    /// Rewrites the host candidates of our SDP that name connection sockets to the shared port.
    pub fn announce(&self, sdp: &str) -> String {
        let mut out = String::with_capacity(sdp.len());
        for line in sdp.split_inclusive('\n') {
            let Some(c) = line.trim_end().strip_prefix("a=candidate:") else {
                out.push_str(line);
                continue;
            };
            let mut f: Vec<&str> = c.split(' ').collect();
            let addr = match (f.get(4).and_then(|ip| ip.parse::<IpAddr>().ok()), f.get(5).and_then(|p| p.parse::<u16>().ok())) {
                (Some(ip), Some(port)) if f.get(7) == Some(&"host") => SocketAddr::new(ip, port),
                _ => {
                    out.push_str(line);
                    continue;
                }
            };
            match self.announce_port(addr) {
                Some(port) => {
                    let port = port.to_string();
                    f[5] = &port;
                    out.push_str("a=candidate:");
                    out.push_str(&f.join(" "));
                    out.push_str("\r\n");
                }
                None => out.push_str(line),
            }
        }
        out
    }

    /// The runtime for one new connection: its sockets go through the mux. Also returns the
    /// ICE credentials to give its setting engine, and where its media goes once it is up.
    pub fn runtime(self: &Arc<Self>, inner: Arc<dyn Runtime>) -> (Arc<dyn Runtime>, String, String, Arc<MediaRoute>) {
        let ufrag = random_ice_chars(16);
        let pwd = random_ice_chars(24);
        let slot = self.slot(&ufrag);
        let route = Arc::new(MediaRoute::default());
        let rt = MuxRuntime { inner, mux: self.clone(), slot: Arc::new(SlotGuard { mux: Arc::downgrade(self), slot }), route: route.clone() };
        (Arc::new(rt), ufrag, pwd, route)
    }
}

/// Sends with the don't-fragment bit and without path-MTU bookkeeping
/// (`IP_PMTUDISC_PROBE`). WebRTC keeps its datagrams under 1,200 bytes or so; and a datagram
/// that may not be fragmented gets IP id 0, where the default mode (`IP_PMTUDISC_WANT`, with
/// `ignore_df`) has the kernel draw each id from its shared, hashed counters
/// (`__ip_select_ident`, 5.6 % of the server at 500 WHEP viewers).
#[allow(unsafe_code)]
fn dont_fragment(sock: &socket2::Socket, v4: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (level, name, value) = if v4 {
        (libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, libc::IP_PMTUDISC_PROBE)
    } else {
        (libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER, libc::IPV6_PMTUDISC_PROBE)
    };
    // SAFETY: the descriptor is the live socket `sock` borrows; the option value is a c_int
    // read by the kernel during the call, with its exact size passed.
    let r = unsafe {
        libc::setsockopt(sock.as_raw_fd(), level, name, (&value as *const libc::c_int).cast(), std::mem::size_of::<libc::c_int>() as libc::socklen_t)
    };
    if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// ICE ufrag/password characters (RFC 8445: ALPHA / DIGIT / "+" / "/").
fn random_ice_chars(n: usize) -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..n).map(|_| CHARS[rand::random::<u32>() as usize % CHARS.len()] as char).collect()
}

async fn read_loop(mux: Weak<UdpMux>, socket: Arc<tokio::net::UdpSocket>, ip: IpAddr) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            // ICMP errors surface here on Linux (ConnectionRefused); they concern one peer.
            Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted) => continue,
            // Anything else is logged and retried after a pause: ending this loop would cut
            // every connection on the port off without a word.
            Err(e) => {
                tracing::error!(error = %e, "shared WebRTC UDP socket: receive failed; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(mux) = mux.upgrade() else { return };
        let Some(inbox) = mux.route(ip, from, &buf[..n]) else {
            mux.unroutable.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        // The peer's DTLS and SRTP come from the pair in use: a pair ICE switched to shows
        // here first (a send-only connection sends little of its own once up).
        if let Some(&first) = buf[..n].first() {
            inbox.route.note(first, &socket, from);
        }
        let mut q = inbox.queue.lock();
        if q.0.len() >= INBOX {
            mux.overflow.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        q.0.push_back((buf[..n].to_vec(), from));
        if let Some(w) = q.1.take() {
            w.wake();
        }
    }
}

/// Forgets a connection's routes when its last socket and its runtime are gone.
struct SlotGuard {
    mux: Weak<UdpMux>,
    slot: u64,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        if let Some(mux) = self.mux.upgrade() {
            mux.release(self.slot);
        }
    }
}

/// One connection's runtime: the default one, except that UDP sockets go through the mux.
struct MuxRuntime {
    inner: Arc<dyn Runtime>,
    mux: Arc<UdpMux>,
    slot: Arc<SlotGuard>,
    route: Arc<MediaRoute>,
}

impl fmt::Debug for MuxRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MuxRuntime").field("slot", &self.slot.slot).finish_non_exhaustive()
    }
}

impl Runtime for MuxRuntime {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn JoinHandle> {
        self.inner.spawn(future)
    }

    fn spawn_reactor(&self, reactor_pool_size: usize, future: Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn JoinHandle> {
        self.inner.spawn_reactor(reactor_pool_size, future)
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        let identity = socket.local_addr()?;
        let ip = identity.ip();
        // The mDNS socket (wildcard, port 5353) and anything unspecified keep their own socket.
        if ip.is_unspecified() || ip.is_multicast() {
            return self.inner.wrap_udp_socket(socket);
        }
        let shared = self.mux.shared_socket(ip)?;
        let inbox = Arc::new(Inbox { slot: self.slot.slot, local_ip: ip, queue: Mutex::new((VecDeque::new(), None)), route: self.route.clone() });
        {
            let mut r = self.mux.routes.lock();
            if let Some(slot) = r.slots.get_mut(&self.slot.slot) {
                slot.insert(ip, Arc::downgrade(&inbox));
            }
            r.identities.insert(identity, SocketAddr::new(ip, self.mux.port));
        }
        Ok(Arc::new(MuxSocket {
            identity,
            own: socket,
            shared,
            inbox,
            mux: self.mux.clone(),
            _slot: self.slot.clone(),
            claimed: Mutex::new(None),
            route: self.route.clone(),
        }))
    }

    fn wrap_tcp_listener(&self, listener: std::net::TcpListener) -> io::Result<Arc<dyn AsyncTcpListener>> {
        self.inner.wrap_tcp_listener(listener)
    }

    fn connect_tcp<'a>(&'a self, remote_addr: SocketAddr) -> Pin<Box<dyn Future<Output = io::Result<Arc<dyn AsyncTcpStream>>> + Send + 'a>> {
        self.inner.connect_tcp(remote_addr)
    }

    fn resolve_host<'a>(&'a self, host: &'a str) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        self.inner.resolve_host(host)
    }

    fn now(&self) -> Instant {
        self.inner.now()
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.inner.sleep(duration)
    }

    fn interval(&self, period: Duration) -> Box<dyn AsyncInterval> {
        self.inner.interval(period)
    }

    fn block_on(&self, future: Pin<Box<dyn Future<Output = ()> + '_>>) {
        self.inner.block_on(future)
    }

    fn yield_now(&self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.inner.yield_now()
    }

    fn name(&self) -> &'static str {
        "tokio+udpmux"
    }
}

/// A connection's view of the shared socket.
struct MuxSocket {
    /// The connection's own address (its ICE agent's host candidate).
    identity: SocketAddr,
    /// Its own socket, kept bound so the identity stays unique; never read.
    own: std::net::UdpSocket,
    shared: Arc<tokio::net::UdpSocket>,
    inbox: Arc<Inbox>,
    mux: Arc<UdpMux>,
    _slot: Arc<SlotGuard>,
    /// The destination last claimed (the packet path sends to one peer: no table lock then).
    claimed: Mutex<Option<SocketAddr>>,
    route: Arc<MediaRoute>,
}

impl fmt::Debug for MuxSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MuxSocket").field("identity", &self.identity).field("own", &self.own.local_addr().ok()).finish_non_exhaustive()
    }
}

impl Drop for MuxSocket {
    fn drop(&mut self) {
        let mut r = self.mux.routes.lock();
        r.identities.remove(&self.identity);
        let me = Arc::as_ptr(&self.inbox);
        r.remotes.retain(|_, w| !std::ptr::eq(w.as_ptr(), me));
    }
}

impl AsyncUdpSocket for MuxSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.identity)
    }

    fn poll_send(&self, cx: &mut Context<'_>, transmit: &Transmit<'_>) -> Poll<io::Result<usize>> {
        // Replies to this destination come back to this connection (STUN and TURN servers
        // are reached that way; peers are already known from their checks).
        let mut claimed = self.claimed.lock();
        if *claimed != Some(transmit.destination) {
            *claimed = Some(transmit.destination);
            let key = (self.inbox.local_ip, transmit.destination);
            let mut r = self.mux.routes.lock();
            if r.remotes.get(&key).and_then(Weak::upgrade).is_none_or(|i| !Arc::ptr_eq(&i, &self.inbox)) {
                r.remotes.insert(key, Arc::downgrade(&self.inbox));
            }
        }
        drop(claimed);
        if let Some(&b) = transmit.contents.first() {
            self.route.note(b, &self.shared, transmit.destination);
        }
        self.shared.poll_send_to(cx, transmit.contents, transmit.destination)
    }

    fn poll_recv(&self, cx: &mut Context<'_>, bufs: &mut [IoSliceMut<'_>], meta: &mut [RecvMeta]) -> Poll<io::Result<usize>> {
        let mut q = self.inbox.queue.lock();
        let n = bufs.len().min(meta.len());
        let mut filled = 0;
        while filled < n {
            let Some((data, from)) = q.0.pop_front() else { break };
            let len = data.len().min(bufs[filled].len());
            bufs[filled][..len].copy_from_slice(&data[..len]);
            let mut m = RecvMeta::default();
            m.addr = from;
            m.len = len;
            m.stride = len.max(1);
            m.dst_ip = Some(self.inbox.local_ip);
            meta[filled] = m;
            filled += 1;
        }
        if filled > 0 {
            return Poll::Ready(Ok(filled));
        }
        q.1 = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// One non-blocking send, straight to the kernel: tokio's `try_send_to` would first ask its
/// readiness flags, which only its own reactor sets, and those say nothing of this thread's
/// sends. A full socket buffer is an error (`WouldBlock`) and the packet is dropped.
pub(crate) fn send_now(socket: &tokio::net::UdpSocket, data: &[u8], dest: SocketAddr) -> std::io::Result<usize> {
    socket2::SockRef::from(socket).send_to(data, &dest.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_media_route_follows_dtls_and_srtp_not_stun() {
        let a = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let peer = || {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
            s
        };
        let (first, second) = (peer(), peer());
        let (p1, p2) = (first.local_addr().unwrap(), second.local_addr().unwrap());
        // Which peer a packet sent on the route reaches.
        let reaches = |route: &MediaRoute, payload: &[u8]| -> Option<SocketAddr> {
            route.send(payload).ok()?;
            let mut buf = [0u8; 64];
            for (s, addr) in [(&first, p1), (&second, p2)] {
                if let Ok(n) = s.recv(&mut buf) {
                    assert_eq!(&buf[..n], payload);
                    return Some(addr);
                }
            }
            None
        };
        let route = MediaRoute::default();
        route.note(0x00, &a, p1); // a STUN binding request: checks go to every candidate
        assert_eq!(reaches(&route, b"a"), None, "nowhere to send yet");
        route.note(22, &a, p1); // DTLS
        assert_eq!(reaches(&route, b"b"), Some(p1));
        route.note(0x01, &a, p2); // a STUN response elsewhere changes nothing
        route.note(0x40, &a, p2); // nor TURN channel data
        assert_eq!(reaches(&route, b"c"), Some(p1));
        route.note(0x80, &a, p2); // SRTP/SRTCP from the pair ICE switched to
        assert_eq!(reaches(&route, b"d"), Some(p2));
    }

    #[test]
    fn host_candidates_are_announced_on_the_shared_port() {
        let mux = UdpMux::new(7882);
        let own: SocketAddr = "127.0.0.1:40001".parse().unwrap();
        mux.routes.lock().identities.insert(own, "127.0.0.1:7882".parse().unwrap());
        let sdp = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=candidate:1 1 udp 2130706431 127.0.0.1 40001 typ host\r\na=candidate:2 1 udp 2130706431 10.0.0.1 40002 typ host\r\na=ice-ufrag:x\r\n";
        let out = mux.announce(sdp);
        assert!(out.contains("a=candidate:1 1 udp 2130706431 127.0.0.1 7882 typ host\r\n"), "{out}");
        assert!(out.contains("a=candidate:2 1 udp 2130706431 10.0.0.1 40002 typ host\r\n"), "{out}");
        assert!(out.ends_with("a=ice-ufrag:x\r\n"));
    }
}
