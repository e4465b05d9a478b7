#!/usr/bin/env python3
"""A minimal Events API stand-in for benchmarks: answers {"code":0} and counts events, or HTTP 500
while the file named by --down-flag exists. GET /count returns the delivered event count."""
import argparse, json, os, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--down-flag", required=True)
args = parser.parse_args()
lock = threading.Lock()
delivered = 0

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, status, body):
        data = body.encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        with lock:
            self.reply(200, str(delivered))

    def do_POST(self):
        global delivered
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if os.path.exists(args.down_flag):
            return self.reply(500, "down")
        events = len(json.loads(body).get("data", []))
        with lock:
            delivered += events
        self.reply(200, '{"code":0,"message":"OK","request_id":"bench","data":{}}')

    def log_message(self, *a):
        pass

ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()
