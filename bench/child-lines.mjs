// Reads a child process's stdout a line at a time: `const next = lineReader(child)`, then
// `await next()` for each line (without its newline). Rejects once the child has exited with no
// line left. Used by bench/broadcast.mjs and bench/tls.mjs to follow their clients.

/** `what` names the child in the error. */
export function lineReader(child, what = 'child') {
  const queue = [];
  let wake = () => {};
  let out = '';
  child.stdout.on('data', (d) => {
    out += d;
    let nl;
    while ((nl = out.indexOf('\n')) >= 0) {
      queue.push(out.slice(0, nl));
      out = out.slice(nl + 1);
      wake();
    }
  });
  child.on('exit', () => wake());
  return async () => {
    while (queue.length === 0) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${what} exited (${child.exitCode ?? child.signalCode})`);
      await new Promise((resolve) => (wake = resolve));
    }
    return queue.shift();
  };
}
