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
            other => panic!("unknown floor {other}"),
        }
    });
    std::process::exit(0);
}

/// Reads the PEM identity from stdin, serves echo on every bidirectional stream, prints
/// the port, and exits when stdin closes.
async fn quinn_echo() {
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
        let ca = ClusterCa::generate().expect("ca");
        let (ca_pem, cert, key) = ca.issue("floor server").expect("leaf").to_pem();
        let (child, mut stdin, stdout) = spawn_far_end("quinn", &[]);
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
