#!/usr/bin/env node
// The `rfc6455` command. A file of its own, in the repository, so that npm links and marks it
// executable at install time, before dist/ is built (in a fresh clone `npx rfc6455` found no bin).
import '../dist/cli.js';
