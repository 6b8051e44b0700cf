//! A TCP proxy between the server and its database that a test can turn
//! against the server: cut every open connection (as an idle timeout of a
//! firewall or the database does), or freeze them (bytes are held, the
//! sockets stay open: a frozen primary, a black-holed network).

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
};

pub struct Proxy {
    /// A URI for the driver: direct connection, so it never bypasses the
    /// proxy for the address the database reports for itself.
    pub uri: String,
    cut: watch::Sender<u64>,
    frozen: watch::Sender<bool>,
    accepted: Arc<AtomicU64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Proxy {
    /// Listens on a free port and forwards to `upstream` (`host:port`).
    /// Runs on a thread of its own, so a test blocking its own runtime
    /// (running the CLI, say) does not freeze the database by accident.
    pub async fn start(upstream: &str) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("proxy address").port();
        let (cut, _) = watch::channel(0u64);
        let (frozen, _) = watch::channel(false);
        let accepted = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let upstream = upstream.to_owned();
        let (cut_tx, frozen_tx, counter) = (cut.clone(), frozen.clone(), accepted.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("proxy runtime");
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("proxy listener");
                let serve = async {
                    while let Ok((client, _)) = listener.accept().await {
                        counter.fetch_add(1, Ordering::SeqCst);
                        let Ok(server) = TcpStream::connect(&upstream).await else {
                            continue;
                        };
                        tokio::spawn(pipe(
                            client,
                            server,
                            cut_tx.subscribe(),
                            frozen_tx.subscribe(),
                        ));
                    }
                };
                tokio::select! {
                    () = serve => {}
                    _ = stopped => {}
                }
            });
        });
        Self {
            uri: format!("mongodb://127.0.0.1:{port}/?directConnection=true"),
            cut,
            frozen,
            accepted,
            stop: Some(stop),
        }
    }

    /// Closes every connection open now; new ones work as before.
    pub fn cut_connections(&self) {
        self.cut.send_modify(|generation| *generation += 1);
    }

    /// Holds every byte in both directions until [`Self::thaw`].
    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    pub fn thaw(&self) {
        self.frozen.send_replace(false);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Ends the thread, and with its runtime every connection.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn pipe(
    client: TcpStream,
    server: TcpStream,
    mut cut: watch::Receiver<u64>,
    frozen: watch::Receiver<bool>,
) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    cut.borrow_and_update();
    tokio::select! {
        () = copy(client_read, server_write, frozen.clone()) => {}
        () = copy(server_read, client_write, frozen) => {}
        _ = cut.changed() => {}
    }
}

async fn copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while *frozen.borrow_and_update() {
            if frozen.changed().await.is_err() {
                return;
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
