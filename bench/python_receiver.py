#!/usr/bin/env python3
"""The baseline of `cargo xtask bench ingest`: a plain webhook receiver in Python.

What a careful person would write in an afternoon with the standard library alone: a
ThreadingHTTPServer that checks Plane's signature (lowercase hex HMAC-SHA256 of the raw body,
compared in constant time), checks the body is JSON, inserts the delivery into SQLite (WAL,
synchronous=FULL, one commit per delivery, a UNIQUE (source, delivery_id) for duplicates) and
answers 202 only after the commit. GET /healthz answers 200 without touching the database.

Usage: python_receiver.py --port PORT --db PATH --secret SECRET
It prints "listening on PORT" once it accepts connections.
"""

import argparse
import hashlib
import hmac
import json
import sqlite3
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (
    id           INTEGER PRIMARY KEY,
    source       TEXT NOT NULL,
    delivery_id  TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    body_sha256  TEXT NOT NULL,
    body         BLOB NOT NULL,
    received_at  INTEGER NOT NULL,
    UNIQUE (source, delivery_id)
);
"""


class Inbox:
    """One connection shared by the request threads, behind a lock."""

    def __init__(self, path):
        self.lock = threading.Lock()
        self.conn = sqlite3.connect(path, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = FULL")
        self.conn.executescript(SCHEMA)
        self.conn.commit()

    def insert(self, delivery_id, event_type, body):
        """True when stored, False when a duplicate; returns after the commit."""
        digest = hashlib.sha256(body).hexdigest()
        now = int(time.time() * 1000)
        with self.lock:
            cursor = self.conn.execute(
                "INSERT OR IGNORE INTO inbox "
                "(source, delivery_id, event_type, body_sha256, body, received_at) "
                "VALUES ('plane', ?, ?, ?, ?, ?)",
                (delivery_id, event_type, digest, body, now),
            )
            self.conn.commit()
            return cursor.rowcount == 1


def handler(secret, inbox):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def answer(self, status, payload):
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/healthz":
                self.answer(200, {"status": "ok"})
            else:
                self.answer(404, {"error": "not found"})

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if self.path != "/webhooks/plane":
                self.answer(404, {"error": "not found"})
                return
            claimed = self.headers.get("X-Plane-Signature", "")
            expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(claimed.strip().lower().encode(), expected.encode()):
                self.answer(401, {"error": "invalid webhook signature"})
                return
            try:
                json.loads(body)
            except ValueError:
                self.answer(400, {"error": "body is not valid JSON"})
                return
            event_type = self.headers.get("X-Plane-Event", "")
            delivery_id = self.headers.get("X-Plane-Delivery") or hashlib.sha256(body).hexdigest()
            try:
                stored = inbox.insert(delivery_id, event_type, body)
            except sqlite3.Error as err:
                self.answer(503, {"error": "inbox unavailable: %s" % err})
                return
            self.answer(202, {"status": "queued" if stored else "duplicate"})

    return Handler


class Server(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog (5) refuses connections under a burst of new ones.
    request_queue_size = 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--secret", required=True)
    args = parser.parse_args()
    inbox = Inbox(args.db)
    server = Server(("127.0.0.1", args.port), handler(args.secret.encode(), inbox))
    print("listening on %d" % server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
