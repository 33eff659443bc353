//! The server's own tests: it must do exactly the wrong thing asked of it.

use super::*;

fn get(server: &TestServer, path: &str, extra: &str) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect(server.addr()).unwrap();
    write!(s, "GET /{path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    (
        String::from_utf8_lossy(&raw[..split]).into_owned(),
        raw[split + 4..].to_vec(),
    )
}

fn server_with_file() -> (tempfile::TempDir, TestServer) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("objects")).unwrap();
    std::fs::write(dir.path().join("objects/f"), b"0123456789").unwrap();
    let server = TestServer::serve(dir.path());
    (dir, server)
}

#[test]
fn serves_files_ranges_and_404() {
    let (_dir, server) = server_with_file();
    let (h, body) = get(&server, "objects/f", "");
    assert!(h.starts_with("HTTP/1.1 200"), "{h}");
    assert_eq!(body, b"0123456789");
    let (h, body) = get(&server, "objects/f", "Range: bytes=3-\r\n");
    assert!(
        h.starts_with("HTTP/1.1 206") && h.contains("Content-Range: bytes 3-9/10"),
        "{h}"
    );
    assert_eq!(body, b"3456789");
    let (h, body) = get(&server, "objects/f", "Range: bytes=2-4\r\n");
    assert!(h.contains("Content-Range: bytes 2-4/10"), "{h}");
    assert_eq!(body, b"234");
    let (h, _) = get(&server, "objects/f", "Range: bytes=10-\r\n");
    assert!(h.starts_with("HTTP/1.1 416"), "{h}");
    let (h, _) = get(&server, "objects/missing", "");
    assert!(h.starts_with("HTTP/1.1 404"), "{h}");
    let (h, _) = get(&server, "objects/../objects/f", "");
    assert!(h.starts_with("HTTP/1.1 400"), "{h}");
    assert_eq!(server.bytes_served_by_path()["objects/f"], 10 + 7 + 3);
    assert_eq!(server.requests_for("objects/f").len(), 4);
}

#[test]
fn faults_apply_by_prefix() {
    let (_dir, server) = server_with_file();
    server.set_fault("objects/", Fault::FlipByte(1));
    server.set_fault("/objects/f", Fault::TruncateBody(4));
    let (_, body) = get(&server, "objects/f", "");
    assert_eq!(body, [b'0', b'1' ^ 0xff, b'2', b'3']);
    server.clear_faults();
    server.set_fault("", Fault::IgnoreRange);
    let (h, body) = get(&server, "objects/f", "Range: bytes=5-\r\n");
    assert!(h.starts_with("HTTP/1.1 200"), "{h}");
    assert_eq!(body.len(), 10);
    server.clear_faults();
    server.set_fault("", Fault::Status(503));
    let (h, _) = get(&server, "objects/f", "");
    assert!(h.starts_with("HTTP/1.1 503"), "{h}");
    server.clear_faults();
    server.set_fault("", Fault::Delay(Duration::from_millis(200)));
    let t = Instant::now();
    get(&server, "objects/f", "");
    assert!(t.elapsed() >= Duration::from_millis(200));
}

#[test]
fn counted_faults_fire_only_the_first_times() {
    let (_dir, server) = server_with_file();
    server.set_fault_times("objects/", Fault::Status(500), 2);
    server.set_fault_times("index.json", Fault::Status(503), 5);
    for _ in 0..2 {
        let (h, _) = get(&server, "objects/f", "");
        assert!(h.starts_with("HTTP/1.1 500"), "{h}");
    }
    let (h, body) = get(&server, "objects/f", "");
    assert!(h.starts_with("HTTP/1.1 200"), "{h}");
    assert_eq!(body, b"0123456789");
    server.set_fault_times("objects/f", Fault::TruncateBody(3), 1);
    let (_, body) = get(&server, "objects/f", "");
    assert_eq!(body, b"012");
    let (_, body) = get(&server, "objects/f", "");
    assert_eq!(body, b"0123456789");
    let statuses: Vec<u16> = server.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 500, 200, 200, 200]);
}

#[test]
fn stall_holds_the_connection_until_drop() {
    let (_dir, server) = server_with_file();
    server.set_fault("", Fault::Stall(3));
    let mut s = TcpStream::connect(server.addr()).unwrap();
    write!(s, "GET /objects/f HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut raw = Vec::new();
    let err = s.read_to_end(&mut raw).unwrap_err();
    assert!(matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ));
    assert!(
        raw.ends_with(b"\r\n\r\n012"),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
    drop(server);
}

/// Reads a response head, then up to `max` body bytes or until EOF.
fn get_some(server: &TestServer, path: &str, max: usize) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /{path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = s.read(&mut buf).unwrap();
        raw.extend_from_slice(&buf[..n]);
        let head = raw.windows(4).position(|w| w == b"\r\n\r\n");
        if n == 0 || head.is_some_and(|h| raw.len() - h - 4 >= max) {
            break;
        }
    }
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let mut body = raw[split + 4..].to_vec();
    body.truncate(max);
    (String::from_utf8_lossy(&raw[..split]).into_owned(), body)
}

#[test]
fn oversize_and_endless_send_more_than_the_file() {
    let (_dir, server) = server_with_file();
    server.set_fault_exact("objects/f", Fault::Oversize(5));
    let (h, body) = get(&server, "objects/f", "Range: bytes=3-\r\n");
    assert!(
        h.starts_with("HTTP/1.1 200") && h.contains("Content-Length: 15"),
        "{h}"
    );
    assert_eq!(&body[..10], b"0123456789");
    assert_eq!(body.len(), 15);

    for (announce, header) in [(None, None), (Some(10), Some("Content-Length: 10"))] {
        server.clear_faults();
        server.set_fault(
            "objects/",
            Fault::Endless {
                content_length: announce,
            },
        );
        let (h, body) = get_some(&server, "objects/f", 1 << 20);
        match header {
            Some(line) => assert!(h.contains(line), "{h}"),
            None => assert!(!h.to_lowercase().contains("content-length"), "{h}"),
        }
        assert_eq!(body.len(), 1 << 20, "far more than the file's 10 bytes");
        assert_eq!(&body[..10], b"0123456789");
    }
}

#[test]
fn trickle_sends_slowly_then_at_full_speed() {
    let (_dir, server) = server_with_file();
    server.set_fault(
        "objects/f",
        Fault::Trickle {
            bytes: 2,
            every: Duration::from_millis(100),
            until: Some(4),
        },
    );
    let t = Instant::now();
    let (_, body) = get(&server, "objects/f", "");
    assert_eq!(body, b"0123456789");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[test]
fn replace_bytes_snapshot_replay_and_serve_bytes() {
    let (dir, server) = server_with_file();
    server.set_fault(
        "objects/f",
        Fault::ReplaceBytes {
            offset: 8,
            bytes: b"XYZ".to_vec(),
        },
    );
    assert_eq!(get(&server, "objects/f", "").1, b"01234567XY");
    server.clear_faults();

    server.snapshot("/objects/f");
    std::fs::write(dir.path().join("objects/f"), b"new version").unwrap();
    assert_eq!(get(&server, "objects/f", "").1, b"new version");
    server.replay("objects/f");
    assert_eq!(get(&server, "objects/f", "").1, b"0123456789");
    server.stop_serving("objects/f");
    assert_eq!(get(&server, "objects/f", "").1, b"new version");

    server.serve_bytes("objects/absent", b"made up".to_vec());
    server.set_fault_exact("objects/f", Fault::Status(404));
    assert_eq!(get(&server, "objects/absent", "").1, b"made up");
    let (h, _) = get(&server, "objects/f", "");
    assert!(h.starts_with("HTTP/1.1 404"), "{h}");
    server.clear_faults();
    let (h, _) = get(&server, "objects/absent", "");
    assert!(h.starts_with("HTTP/1.1 404"), "{h}");
}
