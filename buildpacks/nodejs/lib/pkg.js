// Helpers for the nodejs buildpack, run with the stack's node.
//   node pkg.js validate DIR        exit 1 with a message when package.json (or the lockfile) is not valid JSON
//   node pkg.js has-script DIR NAME exit 0 when scripts.NAME is defined
//   node pkg.js has-dev-deps DIR    exit 0 when devDependencies lists anything
//   node pkg.js lifecycle DIR       print the root install lifecycle scripts that are defined
//   node pkg.js cache-key DIR       print the sha256 of everything that decides what node_modules holds
//   node pkg.js engines DIR         exit 3 with a message when engines.node excludes the stack's node
//                                   (a warning line when the range cannot be read)
'use strict';
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');

const [cmd, dir, arg] = process.argv.slice(2);

function readJson(file) {
  const text = fs.readFileSync(path.join(dir, file), 'utf8');
  try {
    return JSON.parse(text.replace(/^\uFEFF/, ''));
  } catch (e) {
    console.error(`${file} is not valid JSON: ${e.message}`);
    process.exit(1);
  }
}

function lockfileName() {
  for (const f of ['npm-shrinkwrap.json', 'package-lock.json']) {
    if (fs.existsSync(path.join(dir, f))) return f;
  }
  return null;
}

function pkg() {
  const p = readJson('package.json');
  if (p === null || typeof p !== 'object' || Array.isArray(p)) {
    console.error('package.json is not valid: it must hold a JSON object');
    process.exit(1);
  }
  return p;
}

const LIFECYCLE = ['preinstall', 'install', 'postinstall', 'prepare'];

switch (cmd) {
  case 'validate': {
    pkg();
    const lock = lockfileName();
    if (lock) readJson(lock);
    break;
  }
  case 'has-script': {
    const s = pkg().scripts;
    process.exit(s && typeof s[arg] === 'string' && s[arg].trim() !== '' ? 0 : 1);
    break;
  }
  case 'has-dev-deps': {
    const d = pkg().devDependencies;
    process.exit(d && typeof d === 'object' && Object.keys(d).length > 0 ? 0 : 1);
    break;
  }
  case 'lifecycle': {
    const s = pkg().scripts || {};
    for (const name of LIFECYCLE) if (typeof s[name] === 'string' && s[name].trim()) console.log(name);
    break;
  }
  case 'cache-key': {
    const p = pkg();
    // Only the fields that decide what gets installed: bumping "version" or editing other
    // scripts must not throw the cached node_modules away.
    const deps = {};
    for (const k of ['dependencies', 'devDependencies', 'optionalDependencies', 'peerDependencies',
      'bundleDependencies', 'bundledDependencies', 'overrides', 'workspaces']) {
      if (p[k] !== undefined) deps[k] = p[k];
    }
    const lockName = lockfileName();
    let lock = null;
    if (lockName) {
      lock = readJson(lockName);
      // The lockfile repeats the root package's name and version; leave those out too.
      delete lock.name;
      delete lock.version;
      if (lock.packages && lock.packages['']) {
        delete lock.packages[''].name;
        delete lock.packages[''].version;
      }
    }
    const h = crypto.createHash('sha256');
    h.update(JSON.stringify({
      format: 1,
      node: process.version,
      arch: process.arch,
      npm: process.env.NPM_VERSION || '',
      deps,
      lockName,
      lock,
    }));
    console.log(h.digest('hex'));
    break;
  }
  case 'engines': {
    const p = pkg();
    const want = p.engines && p.engines.node;
    if (typeof want !== 'string') break;
    const ok = require('./semver-range').satisfies(process.version, want);
    if (ok === null) {
      console.log(`package.json engines.node is '${want}', which this buildpack cannot check; ` +
        `building with the stack's node ${process.version}`);
    } else if (!ok) {
      console.log(`package.json engines.node asks for '${want}', but the stack has node ${process.version}. ` +
        'Builds use the stack\'s node (runtimes are not downloaded): widen engines.node to include ' +
        `${process.version.split('.')[0].slice(1)} (e.g. '>=${process.version.split('.')[0].slice(1)}') ` +
        'if the app runs on it, or install a matching node on the server.');
      process.exit(3);
    }
    break;
  }
  default:
    console.error(`pkg.js: unknown command ${cmd}`);
    process.exit(2);
}
