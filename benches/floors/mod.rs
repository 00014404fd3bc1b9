//! The floors a remote call is measured against, written as a user's fastest
//! hand-written code would be: both ends in tokio tasks, in two processes, over the same
//! loopback as kt's own calls.
//!
//! The far end of each floor is this benchmark binary started again with
//! `KT_BENCH_FLOOR` set ([`serve_if_floor`], first thing in `main`): a quinn echo server
//! with mutual TLS from a CA of the run, or a Unix-socket echo server. Each lives until
//! its stdin closes, that is until the benchmark process is gone.

use std::io::{BufRead, Write};
use std::process::{Child, Command, Stdio};

use kt_transport::wire::tls::{ClusterCa, Identity, SERVER_NAME};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FLOOR_ENV: &str = "KT_BENCH_FLOOR";

/// The size of one floor message (a small call is about this size on the wire).
pub const MESSAGE: usize = 16;

/// In a floor child process: serves the floor and exits; otherwise returns at once.
pub fn serve_if_floor() {
    let Ok(kind) = std::env::var(FLOOR_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("floor runtime");
    runtime.block_on(async move {
        match kind.as_str() {
            "quinn" => quinn_echo().await,
            "unix" => unix_echo().await,
            "quinn-bulk" => quinn_bulk().await,
            "memfd" => memfd_server().await,
            other => panic!("unknown floor {other}"),
        }
    });
    std::process::exit(0);
}

/// Reads the PEM identity from stdin and starts a quinn server with it; prints its port.
fn quinn_server() -> quinn::Endpoint {
    let mut lines = std::io::stdin().lock().lines();
    let mut pem = || {
        let line = lines.next().expect("a line").expect("stdin");
        line.replace("\\n", "\n")
    };
    let (ca, cert, key) = (pem(), pem(), pem());
    let identity =
        Identity::from_pem(ca.as_bytes(), cert.as_bytes(), key.as_bytes()).expect("identity");
    let server = quinn::Endpoint::server(
        identity.server_config().expect("server config"),
        "127.0.0.1:0".parse().expect("addr"),
    )
    .expect("bind");
    println!("{}", server.local_addr().expect("addr").port());
    std::io::stdout().flush().expect("flush");
    server
}

/// Serves echo on every bidirectional stream, and exits when stdin closes.
async fn quinn_echo() {
    let server = quinn_server();
    tokio::spawn(async move {
        while let Some(incoming) = server.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(Some(n)) = recv.read(&mut buf).await {
                            if send.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    });
                }
            });
        }
    });
    wait_for_stdin_eof().await;
}

/// Binds the Unix socket named by `KT_BENCH_FLOOR_PATH`, echoes on every connection,
/// and exits when stdin closes.
async fn unix_echo() {
    let path = std::env::var("KT_BENCH_FLOOR_PATH").expect("socket path");
    let listener = tokio::net::UnixListener::bind(&path).expect("bind");
    println!("ready");
    std::io::stdout().flush().expect("flush");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    wait_for_stdin_eof().await;
}

/// The size of the value a bulk floor serves (`KT_BENCH_FLOOR_LEN`).
fn floor_len() -> usize {
    std::env::var("KT_BENCH_FLOOR_LEN")
        .expect("a length")
        .parse()
        .expect("a number")
}

/// On every bidirectional stream, reads nothing and writes `KT_BENCH_FLOOR_LEN` bytes
/// held in memory (as `Bytes` chunks: no copy on the sending side), then finishes it.
async fn quinn_bulk() {
    let server = quinn_server();
    let value = bytes::Bytes::from(vec![1u8; floor_len()]);
    tokio::spawn(async move {
        while let Some(incoming) = server.accept().await {
            let value = value.clone();
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    let value = value.clone();
                    tokio::spawn(async move {
                        let mut ask = [0u8; 1];
                        if recv.read_exact(&mut ask).await.is_err() {
                            return;
                        }
                        let mut at = 0;
                        while at < value.len() {
                            let end = value.len().min(at + (1 << 20));
                            if send.write_chunk(value.slice(at..end)).await.is_err() {
                                return;
                            }
                            at = end;
                        }
                        let _ = send.finish();
                    });
                }
            });
        }
    });
    wait_for_stdin_eof().await;
}

/// Holds a sealed memfd of `KT_BENCH_FLOOR_LEN` bytes and hands it to every request on
/// the abstract Unix socket `KT_BENCH_FLOOR_PATH`.
async fn memfd_server() {
    use kt_transport::wire::fd_passing::FdListener;
    use kt_transport::wire::sealed_memory::SealedMemory;
    use std::os::fd::AsFd;
    let name = std::env::var("KT_BENCH_FLOOR_PATH").expect("socket name");
    let memory =
        std::sync::Arc::new(SealedMemory::from_slice(&vec![1u8; floor_len()]).expect("memfd"));
    let listener = FdListener::bind(&name).expect("bind");
    println!("ready");
    std::io::stdout().flush().expect("flush");
    tokio::spawn(async move {
        while let Ok(connection) = listener.accept().await {
            let memory = memory.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 16];
                while let Ok((n, _)) = connection.recv(&mut buf).await {
                    if n == 0 || connection.send(b"k", &[memory.fd().as_fd()]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    wait_for_stdin_eof().await;
}

async fn wait_for_stdin_eof() {
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
}

/// A floor's far end: a child process that lives as long as this value.
pub struct FarEnd {
    child: Child,
    /// Held open: the far end exits when it closes.
    _stdin: std::process::ChildStdin,
}

impl Drop for FarEnd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts this binary as the far end of floor `kind` with `env`; returns it with its
/// stdout, whose first line says it is ready.
fn spawn_far_end(
    kind: &str,
    env: &[(&str, &str)],
) -> (Child, std::process::ChildStdin, std::process::ChildStdout) {
    let mut child = Command::new(std::env::current_exe().expect("this binary"))
        .env(FLOOR_ENV, kind)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the floor's far end");
    let stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    (child, stdin, stdout)
}

/// Starts the quinn far end `kind` with `env`, hands it an identity from a fresh CA, and
/// connects to it with mutual TLS (call inside the runtime).
async fn connect_quinn_far_end(
    kind: &str,
    env: &[(&str, &str)],
) -> (quinn::Connection, quinn::Endpoint, FarEnd) {
    let ca = ClusterCa::generate().expect("ca");
    let (ca_pem, cert, key) = ca.issue("floor server").expect("leaf").to_pem();
    let (child, mut stdin, stdout) = spawn_far_end(kind, env);
    for pem in [ca_pem, cert, key] {
        writeln!(stdin, "{}", pem.replace('\n', "\\n")).expect("write identity");
    }
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("port");
    let port: u16 = line.trim().parse().expect("a port");
    let far = FarEnd {
        child,
        _stdin: stdin,
    };
    let client_id = ca.issue("floor client").expect("leaf");
    let mut endpoint =
        quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("client");
    endpoint.set_default_client_config(client_id.client_config().expect("client config"));
    let conn = endpoint
        .connect(([127, 0, 0, 1], port).into(), SERVER_NAME)
        .expect("connect")
        .await
        .expect("handshake");
    (conn, endpoint, far)
}

/// A raw quinn stream to a far-end echo process, with mutual TLS from a fresh CA.
pub struct QuinnFloor {
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
    _conn: quinn::Connection,
    _endpoint: quinn::Endpoint,
    _far: FarEnd,
}

impl QuinnFloor {
    /// Starts the far end and connects to it (call inside the runtime).
    pub async fn start() -> QuinnFloor {
        let (conn, endpoint, far) = connect_quinn_far_end("quinn", &[]).await;
        let (send, recv) = conn.open_bi().await.expect("stream");
        QuinnFloor {
            send,
            recv,
            _conn: conn,
            _endpoint: endpoint,
            _far: far,
        }
    }

    /// One 16-byte ping-pong.
    pub async fn round_trip(&mut self) {
        self.send.write_all(&[7u8; MESSAGE]).await.expect("write");
        let mut buf = [0u8; MESSAGE];
        self.recv.read_exact(&mut buf).await.expect("read");
    }

    /// `n` 16-byte messages written back to back, then all `n` echoes read.
    pub async fn pipelined(&mut self, n: usize) {
        let out = vec![7u8; MESSAGE * n];
        let (send, recv) = (&mut self.send, &mut self.recv);
        let write = async move { send.write_all(&out).await.expect("write") };
        let read = async move {
            let mut back = vec![0u8; MESSAGE * n];
            recv.read_exact(&mut back).await.expect("read");
        };
        tokio::join!(write, read);
    }
}

/// A Unix-socket stream to a far-end echo process.
pub struct UnixFloor {
    stream: tokio::net::UnixStream,
    _far: FarEnd,
    _dir: tempfile::TempDir,
}

impl UnixFloor {
    /// Starts the far end and connects to it (call inside the runtime).
    pub async fn start() -> UnixFloor {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("floor.sock");
        let path_text = path.to_str().expect("utf-8 path").to_string();
        let (child, stdin, stdout) =
            spawn_far_end("unix", &[("KT_BENCH_FLOOR_PATH", path_text.as_str())]);
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("ready");
        let far = FarEnd {
            child,
            _stdin: stdin,
        };
        let stream = tokio::net::UnixStream::connect(&path)
            .await
            .expect("connect");
        UnixFloor {
            stream,
            _far: far,
            _dir: dir,
        }
    }

    /// One 16-byte ping-pong.
    pub async fn round_trip(&mut self) {
        self.stream.write_all(&[7u8; MESSAGE]).await.expect("write");
        let mut buf = [0u8; MESSAGE];
        self.stream.read_exact(&mut buf).await.expect("read");
    }
}

/// The same-host floor of a store get: a far-end process hands over a sealed memfd on an
/// abstract Unix socket, and this side checks its seals and maps it.
pub struct MemfdFloor {
    connection: kt_transport::wire::fd_passing::FdConnection,
    len: usize,
    _far: FarEnd,
}

impl MemfdFloor {
    /// Starts the far end holding `len` bytes and connects to it (inside the runtime).
    pub async fn start(len: usize) -> MemfdFloor {
        let name = format!("kt-bench-floor-{}", std::process::id());
        let len_text = len.to_string();
        let (child, stdin, stdout) = spawn_far_end(
            "memfd",
            &[
                ("KT_BENCH_FLOOR_PATH", &name),
                ("KT_BENCH_FLOOR_LEN", &len_text),
            ],
        );
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("ready");
        let connection =
            kt_transport::wire::fd_passing::FdConnection::connect(&name).expect("connect");
        MemfdFloor {
            connection,
            len,
            _far: FarEnd {
                child,
                _stdin: stdin,
            },
        }
    }

    /// Asks for the memfd and maps it.
    pub async fn fetch(&mut self) -> kt_transport::wire::sealed_memory::SealedMemory {
        self.connection.send(b"?", &[]).await.expect("ask");
        let mut buf = [0u8; 16];
        let (_, mut fds) = self.connection.recv(&mut buf).await.expect("answer");
        kt_transport::wire::sealed_memory::SealedMemory::from_received(
            fds.pop().expect("a memfd"),
            Some(self.len as u64),
        )
        .expect("sealed")
    }
}

/// The cross-host floor of a store get: a raw quinn stream (mutual TLS) from a far-end
/// process carrying the whole value into a buffer.
pub struct QuinnBulkFloor {
    conn: quinn::Connection,
    _endpoint: quinn::Endpoint,
    _far: FarEnd,
}

impl QuinnBulkFloor {
    /// Starts the far end holding `len` bytes and connects to it (inside the runtime).
    pub async fn start(len: usize) -> QuinnBulkFloor {
        let len = len.to_string();
        let (conn, endpoint, far) =
            connect_quinn_far_end("quinn-bulk", &[("KT_BENCH_FLOOR_LEN", &len)]).await;
        QuinnBulkFloor {
            conn,
            _endpoint: endpoint,
            _far: far,
        }
    }

    /// Fetches the whole value into `buffer` (its length) on a new stream.
    pub async fn fetch(&mut self, buffer: &mut [u8]) {
        let (mut send, mut recv) = self.conn.open_bi().await.expect("stream");
        send.write_all(&[1]).await.expect("ask");
        recv.read_exact(buffer).await.expect("the value");
    }
}
