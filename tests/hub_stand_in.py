"""A loopback stand-in for the Hugging Face hub's HTTP API: just what ``huggingface_hub``'s
``create_repo`` + ``create_commit`` call, with the basic LFS transfer (the client is run with
``HF_HUB_DISABLE_XET=1``; the Xet protocol needs Hugging Face's storage service).

Endpoints: ``POST /api/repos/create``, ``POST /api/validate-yaml``,
``POST /api/models/<repo>/preupload/<rev>`` (binary files go through LFS, as on the hub),
``POST /<repo>.git/info/lfs/objects/batch``, ``PUT /lfs/<oid>``,
``POST /api/models/<repo>/commit/<rev>`` (ndjson). Every request is recorded (method, path,
headers, body), so a test can read every byte that was uploaded.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import attrs


@attrs.define
class Request:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes


@attrs.define
class Repo:
    private: bool | None
    files: dict[str, bytes] = attrs.Factory(dict)
    commits: list[dict[str, Any]] = attrs.Factory(list)


class HubStandIn:
    """``with HubStandIn() as hub: ... hub.url ... hub.repos["org/name"].files``."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.repos: dict[str, Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> HubStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    def uploaded_bytes(self) -> bytes:
        """Every request body the client sent (file contents, commit payloads, metadata)."""
        return b"".join(r.body for r in self.requests)

    # ------------------------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = b""
                    while True:
                        size = int(self.rfile.readline().strip().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            return out
                        out += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _reply(self, status: int, payload: Any = None) -> None:
                data = json.dumps(payload if payload is not None else {}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                body = self._body()
                hub.requests.append(Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                                            body))
                if self.headers.get("Authorization") is None and not self.path.startswith("/lfs/"):
                    return self._reply(401, {"error": "no token"})
                path = self.path.split("?", 1)[0]
                if self.command == "POST" and path == "/api/repos/create":
                    return self._create(json.loads(body))
                if self.command == "POST" and path == "/api/validate-yaml":
                    return self._reply(200, {"errors": [], "warnings": []})
                if self.command == "PUT" and (m := re.fullmatch(r"/lfs/([0-9a-f]{64})", path)):
                    if hashlib.sha256(body).hexdigest() != m.group(1):
                        return self._reply(400, {"error": "sha256 mismatch"})
                    hub.lfs[m.group(1)] = body
                    return self._reply(200)
                if self.command == "POST" and (m := re.fullmatch(r"/(.+)\.git/info/lfs/objects/batch", path)):
                    objects = json.loads(body)["objects"]
                    return self._reply(200, {"transfer": "basic", "objects": [
                        {"oid": o["oid"], "size": o["size"],
                         "actions": {"upload": {"href": f"{hub.url}/lfs/{o['oid']}"}}} for o in objects]})
                m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/(preupload|commit)/([^/]+)", path)
                if self.command == "POST" and m:
                    if m.group(1) not in hub.repos:
                        return self._reply(404, {"error": "Repository not found"})
                    if m.group(2) == "preupload":
                        files = json.loads(body)["files"]
                        return self._reply(200, {"files": [
                            {"path": f["path"], "shouldIgnore": False, "oid": None,
                             "uploadMode": "lfs" if b"\0" in base64.b64decode(f["sample"]) else "regular"}
                            for f in files]})
                    return self._commit(m.group(1), body)
                return self._reply(404, {"error": f"not implemented: {self.command} {path}"})

            def _create(self, payload: dict[str, Any]) -> None:
                repo_id = f"{payload['organization']}/{payload['name']}"
                if repo_id in hub.repos:
                    return self._reply(409, {"error": "You already created this model repo"})
                hub.repos[repo_id] = Repo(private=payload.get("visibility") == "private" or None)
                return self._reply(200, {"url": f"{hub.url}/{repo_id}"})

            def _commit(self, repo_id: str, body: bytes) -> None:
                repo = hub.repos[repo_id]
                lines = [json.loads(line) for line in body.splitlines() if line.strip()]
                header = next(line["value"] for line in lines if line["key"] == "header")
                for line in lines:
                    value = line["value"]
                    if line["key"] == "file":
                        repo.files[value["path"]] = base64.b64decode(value["content"])
                    elif line["key"] == "lfsFile":
                        if value["oid"] not in hub.lfs:
                            return self._reply(422, {"error": f"LFS object {value['oid']} was not uploaded"})
                        repo.files[value["path"]] = hub.lfs[value["oid"]]
                oid = hashlib.sha1(body).hexdigest()
                repo.commits.append({"oid": oid, "summary": header["summary"]})
                return self._reply(200, {"commitUrl": f"{hub.url}/{repo_id}/commit/{oid}", "commitOid": oid,
                                         "pullRequestUrl": None})

            do_POST = do_PUT = do_GET = _handle

        return Handler
