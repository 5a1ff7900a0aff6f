//! The floor to measure the gateway against: a minimal pass-through HTTP proxy. A hyper
//! server (HTTP/1 and HTTP/2) forwards every request, head and body bytes as they come,
//! unparsed, to one upstream through hyper-util's pooled client, and streams the answer
//! back. It does what any proxy in front of the mock must do on this machine (two HTTP
//! exchanges instead of one) and nothing else, so the gap between it and the gateway is the
//! gateway's own work.
//!
//! Usage: `floor-proxy --upstream http://127.0.0.1:PORT [--listen 127.0.0.1:0] [--workers N]`
//! (N defaults to the cores it may run on, as the gateway's runtime does).
//! Prints `http://ADDR/v1` on stdout once listening.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use mcp_chat_bench::Args;

type Body = BoxBody<Bytes, hyper::Error>;

fn fail(message: &str) -> ! {
    eprintln!("floor-proxy: {message}");
    std::process::exit(2)
}

fn main() {
    let args = Args::parse(false);
    // As many workers as the gateway's runtime has: one per core it may run on.
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let workers = args.get("workers", cores);
    let listen = args.str("listen", "127.0.0.1:0");
    let upstream: hyper::Uri = args
        .opt("upstream")
        .unwrap_or_else(|| fail("--upstream http://HOST:PORT is required"))
        .parse()
        .unwrap_or_else(|e| fail(&format!("--upstream: {e}")));
    let authority = upstream
        .authority()
        .cloned()
        .unwrap_or_else(|| fail("--upstream has no host"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&format!("runtime: {e}")));
    runtime.block_on(async move {
        let listener = mcp_chat_bench::listen(&listen)
            .unwrap_or_else(|e| fail(&format!("bind {listen}: {e}")));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| fail(&format!("{e}")));
        println!("http://{addr}/v1");
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: Client<HttpConnector, Incoming> =
            Client::builder(TokioExecutor::new()).build(connector);
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let client = client.clone();
            let authority = authority.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let client = client.clone();
                    let authority = authority.clone();
                    async move { Ok::<_, Infallible>(forward(&client, authority, request).await) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

/// The request to the upstream (same method, path, headers and body), its answer back.
async fn forward(
    client: &Client<HttpConnector, Incoming>,
    authority: hyper::http::uri::Authority,
    request: Request<Incoming>,
) -> Response<Body> {
    let (mut head, body) = request.into_parts();
    let path = head
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    head.uri = match hyper::Uri::builder()
        .scheme("http")
        .authority(authority)
        .path_and_query(path)
        .build()
    {
        Ok(uri) => uri,
        Err(e) => return bad_gateway(&e.to_string()),
    };
    // The client speaks HTTP/1 to the upstream whatever the caller spoke.
    head.version = hyper::Version::HTTP_11;
    head.headers.remove(hyper::header::HOST);
    match client.request(Request::from_parts(head, body)).await {
        Ok(answer) => answer.map(BodyExt::boxed),
        Err(e) => bad_gateway(&e.to_string()),
    }
}

fn bad_gateway(message: &str) -> Response<Body> {
    let mut answer = Response::new(
        Full::new(Bytes::from(message.to_string()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *answer.status_mut() = hyper::StatusCode::BAD_GATEWAY;
    answer
}
