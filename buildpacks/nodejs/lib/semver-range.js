// A small semver range check for package.json's engines.node (no npm modules needed).
//   satisfies('v20.11.1', '>=18 <21')  -> true / false, or null when the range is not understood
// Understood: alternatives joined by ||, space-separated comparators (all must hold), the
// operators >= <= > < = ^ ~, x-ranges (18, 18.x, 18.2.*, *, x, ''), exact versions and
// hyphen ranges (18 - 20). Prerelease tags are not (null).
//   node semver-range.js VERSION RANGE   prints true, false or unknown
'use strict';

function parseVersion(v) {
  const m = /^v?(\d+)\.(\d+)\.(\d+)$/.exec(String(v).trim());
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : null;
}

// '18.2' -> [18, 2]; '18.x' -> [18]; '*' -> []; null when unreadable.
function parsePartial(s) {
  s = s.replace(/^[vV=]/, '');
  if (s === '' || s === '*' || s === 'x' || s === 'X') return [];
  const parts = s.split('.');
  if (parts.length > 3) return null;
  const out = [];
  for (let i = 0; i < parts.length; i++) {
    if (/^[xX*]$/.test(parts[i])) {
      // Nothing numeric may follow a wildcard.
      return parts.slice(i).every((p) => /^[xX*]$/.test(p)) ? out : null;
    }
    if (!/^\d+$/.test(parts[i])) return null;
    out.push(Number(parts[i]));
  }
  return out;
}

function cmp(a, b) {
  for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
  return 0;
}

const fill = (p) => [p[0] || 0, p[1] || 0, p[2] || 0];

// The first version above everything a partial matches: [18] -> [19,0,0], [18,2] -> [18,3,0].
function above(p) {
  if (p.length === 0) return null;
  if (p.length === 1) return [p[0] + 1, 0, 0];
  if (p.length === 2) return [p[0], p[1] + 1, 0];
  return [p[0], p[1], p[2] + 1];
}

// One comparator -> a list of [op, version] bounds; null when not understood.
function bounds(token) {
  const m = /^(>=|<=|>|<|=|\^|~>?)?(.*)$/.exec(token);
  const op = m[1] || '';
  const p = parsePartial(m[2]);
  if (p === null) return null;
  const lo = fill(p);
  const hi = above(p);
  switch (op) {
    case '':
    case '=':
      return hi ? [['>=', lo], ['<', hi]] : [];
    case '>=':
      return [['>=', lo]];
    case '>':
      return hi ? [['>=', hi]] : [['<', [0, 0, 0]]];
    case '<':
      return [['<', lo]];
    case '<=':
      return hi ? [['<', hi]] : [];
    case '~':
    case '~>':
      return hi ? [['>=', lo], ['<', p.length === 1 ? [p[0] + 1, 0, 0] : [p[0], p[1] + 1, 0]]] : [];
    case '^': {
      if (!hi) return [];
      let top;
      if (p[0] > 0 || p.length === 1) top = [p[0] + 1, 0, 0];
      else if (p[1] > 0 || p.length === 2) top = [0, p[1] + 1, 0];
      else top = [0, 0, p[2] + 1];
      return [['>=', lo], ['<', top]];
    }
    default:
      return null;
  }
}

function satisfies(version, range) {
  const v = parseVersion(version);
  if (!v || typeof range !== 'string') return null;
  let any = false;
  for (const alt of range.split('||')) {
    // '>= 18' -> '>=18'; 'A - B' -> a hyphen range.
    const text = alt.trim().replace(/(>=|<=|>|<|=|\^|~>?)\s+/g, '$1');
    let tokens;
    const hy = /^(\S+)\s+-\s+(\S+)$/.exec(text);
    if (hy) {
      const a = parsePartial(hy[1]);
      const b = parsePartial(hy[2]);
      if (a === null || b === null) return null;
      tokens = [['>=', fill(a)]].concat(above(b) ? [['<', above(b)]] : []);
    } else {
      tokens = [];
      for (const t of text.split(/\s+/).filter(Boolean)) {
        const b = bounds(t);
        if (b === null) return null;
        tokens.push(...b);
      }
    }
    const ok = tokens.every(([op, bound]) => (op === '>=' ? cmp(v, bound) >= 0 : cmp(v, bound) < 0));
    any = any || ok;
  }
  return any;
}

module.exports = { satisfies };

if (require.main === module) {
  const r = satisfies(process.argv[2], process.argv[3]);
  console.log(r === null ? 'unknown' : String(r));
}
