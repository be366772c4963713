#!/usr/bin/env python3
"""Instructions a request: the user-space instructions the proxy executes for one request of
each case, counted by valgrind's callgrind. Unlike time and CPU figures, the count repeats
within about 0.3 % in back-to-back runs on a noisy machine, so two builds can be compared by
it one change at a time; run them alternately, since a busier machine adds up to 1 % (the
proxy's timers and its cache's upkeep run more often a request while valgrind slows it). It
leaves out the kernel (a quarter of a request's CPU in the load benchmark) and waiting, so it
says which build does less work, not how fast either is.

    cargo bench --bench load --no-run          # the Acme instances and the release build
    python3 benches/instructions.py target/release/scim-proxy scripts/demo.rhai 300 get1 get2 post patch

Cases: get1 (GET /Users/{id}?excludedAttributes=groups, 1 legacy call), get2 (GET
/Users/{id}, 2 calls), filter (GET /Users?filter=userName eq, 2 calls), post (POST /Users, the
load benchmark's body), patch (PATCH /Users/{id} replacing the title), scan (the in-proxy
filter: GET /Users?filter=userName co "42"&count=10 over all 10,000 users, 101 calls; give it
an N of 2 or 3, each takes seconds under valgrind). A case given as CASE:N is counted over N
requests instead (`scan:2 post` runs creates after a scan filled the ID cache to its bound).
Each case is warmed up with N/5 requests (at least 50; scan 2), then N requests are counted,
one connection, one after another. LEVEL=warn runs the proxy at that log level; KEEP=DIR keeps each case's callgrind
dump there (DIR/CASE.out, for callgrind_annotate). Needs valgrind and python3.
"""
import glob
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "load-token-0123456789abcdef"


def load_binary():
    found = [p for p in glob.glob(os.path.join(ROOT, "target/release/deps/load-*")) if not p.endswith(".d")]
    if not found:
        sys.exit("no load benchmark binary: run `cargo bench --bench load --no-run` first")
    return max(found, key=os.path.getmtime)


def user(login, i):
    return {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            "userName": login, "active": True, "displayName": "Ada Lovelace", "title": "New",
            "name": {"givenName": "Ada", "familyName": "Lovelace"},
            "emails": [{"value": f"ada{i}@acme.example", "type": "work", "primary": True}],
            "phoneNumbers": [{"value": "+1 555 0100", "type": "work"}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":
                {"employeeNumber": f"E{i:06}", "department": "Engineering"}}


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    binary, script, count, cases = sys.argv[1], os.path.abspath(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
    work = tempfile.mkdtemp(prefix="scim-instructions-")
    acme = subprocess.Popen([load_binary()], env={**os.environ, "LOAD_ROLE": "acme"},
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    fields = acme.stdout.readline().decode().split()
    demo = open(os.path.join(ROOT, "proxy.yaml")).read()
    app = demo.split("apps:\n", 1)[1].replace("scripts/demo.rhai", script).replace(
        "${env.ACME_BASE_URL:-http://127.0.0.1:7070/api/v1}", f"http://{fields[1]}/api/v1")
    config = os.path.join(work, "proxy.yaml")
    level = os.environ.get("LEVEL", "info")
    with open(config, "w") as f:
        f.write(f"listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nlog: {{format: json, level: {level}}}\n"
                f"server: {{max_body_bytes: 1048576}}\napps:\n{app}")
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    out = os.path.join(work, "callgrind.out")
    env = {**os.environ, "SCIM_TOKEN": TOKEN, "ACME_API_KEY": "load-key", "TOKIO_WORKER_THREADS": "1"}
    env.pop("RUST_LOG", None)
    proxy = subprocess.Popen(["valgrind", "--tool=callgrind", "--instr-atstart=no", "--max-stackframe=300000000",
                              f"--callgrind-out-file={out}", binary, "run", "--config", config,
                              "--listen", f"127.0.0.1:{port}"],
                             env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "stderr"), "w"))
    try:
        for _ in range(600):
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                time.sleep(0.1)
        connection = http.client.HTTPConnection("127.0.0.1", port)
        headers = {"Authorization": "Bearer " + TOKEN, "Content-Type": "application/scim+json"}
        sent = [0]

        def request(case, i):
            sent[0] += 1
            uid = (i * 13) % 10000 + 1
            body = None
            if case == "get1":
                method, path = "GET", f"/scim/v2/Users/{uid}?excludedAttributes=groups"
            elif case == "get2":
                method, path = "GET", f"/scim/v2/Users/{uid}"
            elif case == "filter":
                method, path = "GET", f"/scim/v2/Users?filter=userName%20eq%20%22user{uid:05}%22"
            elif case == "scan":
                method, path = "GET", "/scim/v2/Users?filter=userName%20co%20%2242%22&count=10"
            elif case == "post":
                method, path, body = "POST", "/scim/v2/Users", user(f"i{os.getpid()}-{sent[0]}", i)
            elif case == "patch":
                method, path = "PATCH", f"/scim/v2/Users/{uid}"
                body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                        "Operations": [{"op": "replace", "path": "title", "value": f"T{os.getpid()}-{sent[0]}"}]}
            else:
                sys.exit(f"unknown case {case}")
            connection.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
            answer = connection.getresponse()
            data = answer.read()
            if answer.status >= 300:
                sys.exit(f"{case}: {answer.status} {data[:300]!r}")

        def control(*args):
            subprocess.run(["callgrind_control", *args, str(proxy.pid)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)

        results = []
        for given in cases:
            case, _, times = given.partition(":")
            times = int(times) if times else count
            for i in range(2 if case == "scan" else max(50, times // 5)):
                request(case, i + 20000)
            control("-i", "on")
            control("-z")
            for i in range(times):
                request(case, i)
            control("-d", case)
            control("-i", "off")
            time.sleep(0.5)
            dump = max(glob.glob(out + ".*"), key=os.path.getmtime)
            total = next(int(line.split()[1]) for line in open(dump) if line.startswith("summary:"))
            results.append(f"{case} {total / times / 1000:.1f}k")
            if os.environ.get("KEEP"):
                os.makedirs(os.environ["KEEP"], exist_ok=True)
                shutil.copy(dump, os.path.join(os.environ["KEEP"], f"{case}.out"))
        print(" ".join(results))
    finally:
        proxy.terminate()
        proxy.wait()
        acme.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
