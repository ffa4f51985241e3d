"""Runs a command on a pseudo-terminal, as a user at a terminal would: types each input and waits
(up to 10 s each) for the text expected after it, then reads until the command exits. Prints
everything the terminal showed, then "EXIT <code>". Usage: pty-run.py CMD... -- INPUT EXPECT ...
(INPUT with Python escapes: "\\r" is Enter, "\\x04" Ctrl-D, "\\x03" Ctrl-C)."""
import os, pty, select, sys, time

sep = sys.argv.index('--')
command, steps = sys.argv[1:sep], sys.argv[sep + 1:]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(command[0], command)
out = b''

def read_for(seconds):
    """Reads what comes within `seconds`; False once the terminal is closed."""
    global out
    end = time.time() + seconds
    while time.time() < end:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:
                return False
            if not data:
                return False
            out += data
    return True

def wait_for(text, since):
    end = time.time() + 10
    while text.encode() not in out[since:] and time.time() < end:
        if not read_for(0.05):
            break

wait_for('> ', 0)
for i in range(0, len(steps), 2):
    since = len(out)
    os.write(fd, steps[i].encode().decode('unicode_escape').encode('latin1'))
    wait_for(steps[i + 1], since)
while read_for(0.2):
    pass
_, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode('utf8', 'replace'))
sys.stdout.write('\nEXIT %d\n' % os.waitstatus_to_exitcode(status))
