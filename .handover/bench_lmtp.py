"""Thread pool vs process pool for `mlmpipe lmtp`, and pipe deliver: N help commands, C at a time."""
import concurrent.futures, os, shutil, signal, smtplib, socket, subprocess, sys, time
sys.path.insert(0, "/work/wt/lmtp/tests")
from conftest import MList, make_msg, FAKE_SENDMAIL
ROOT = "/tmp/bench-lmtp"
PY = "/work/wt/lmtp/.venv/bin/python"
M = "/work/wt/lmtp/mlmpipe.py"
N, C = int(sys.argv[1]), int(sys.argv[2])
WORKERS = int(sys.argv[3]) if len(sys.argv) > 3 else 4

def fresh():
    shutil.rmtree(ROOT, ignore_errors=True)
    os.makedirs(ROOT)
    ml = MList(ROOT, extra={"log": ROOT + "/log"})
    ml.cfg.write_text(ml.cfg.read_text().replace("sendmail = %s" % FAKE_SENDMAIL, "sendmail = /bin/true"))
    ml.setup({"m%03d@example.com" % i: ("all", "both") for i in range(20)})
    return ml

def port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

PATCH = ("import sys; sys.path.insert(0, '/work/wt/lmtp'); import mlmpipe, concurrent.futures\n"
         "def start(self):\n"
         "    self.pool = concurrent.futures.ThreadPoolExecutor(self.workers)\n"
         "mlmpipe.Listener.start_pool = start\n"
         "sys.exit(mlmpipe.main(sys.argv[1:]))\n")

def run_lmtp(kind, raws, ml):
    p = port()
    argv = [PY, M] if kind == "process" else [PY, "-c", PATCH]
    proc = subprocess.Popen(argv + ["-c", str(ml.cfg), "lmtp", "--listen=127.0.0.1:%d" % p, "--workers=%d" % WORKERS],
                            env=ml.env(), stderr=subprocess.DEVNULL)
    while True:
        try:
            socket.create_connection(("127.0.0.1", p)).close(); break
        except OSError:
            time.sleep(0.05)
    def one(chunk):
        l = smtplib.LMTP("127.0.0.1", p); l.ehlo("x")
        for to, raw in chunk:
            l.mail("a@example.com"); l.rcpt(to)
            code, _ = l.data(raw.replace(b"\n", b"\r\n")); assert code == 250, (code, _)
        l.quit()
    chunks = [raws[i::C] for i in range(C)]
    t = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(C) as ex:
        list(ex.map(one, chunks))
    took = time.monotonic() - t
    proc.send_signal(signal.SIGTERM); proc.wait()
    return took

def run_pipe(raws, ml):
    def one(item):
        to, raw = item
        r = subprocess.run([PY, "-m", "mlmpipe", "-c", str(ml.cfg), "deliver", "--recipient=" + to, "--sender=a@example.com"],
                           input=raw, env=dict(ml.env(), PYTHONPATH="/work/wt/lmtp"), capture_output=True)
        assert r.returncode == 0, r.stderr
    t = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(C) as ex:
        list(ex.map(one, raws))
    return time.monotonic() - t

for what in sys.argv[4].split(","):
    kind, _, msg = what.partition(":")
    ml = fresh()
    if msg == "post":
        raws = [(ml.addr("new"), make_msg("m000@example.com", ml.addr("new"), "Post %d" % i,
                 body=("Some words of a post, %d.\n" % i) * 40)) for i in range(N)]
    else:
        raws = [(ml.addr("help"), make_msg("someone%d@example.net" % i, ml.addr("help"), "help")) for i in range(N)]
    took = run_pipe(raws, ml) if kind == "pipe" else run_lmtp(kind, raws, ml)
    print("%-8s %-5s N=%d C=%d workers=%d: %.2f s, %.1f msg/s" % (kind, msg or "help", N, C, WORKERS, took, N / took), flush=True)
