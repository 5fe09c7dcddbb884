// Builds the viewer into ../static/ (statemap-viewer.js and .css), which ships in the
// Python package (`node build.mjs DIR` builds into DIR instead). Reproducible: the same
// package-lock.json gives the same bytes, which a test checks against the shipped ones.
import { build } from 'esbuild';

const outdir = process.argv[2] || '../static';

await build({
  entryPoints: { 'statemap-viewer': 'src/main.js' },
  bundle: true,
  format: 'iife',
  minify: true,
  target: ['chrome110', 'firefox115', 'safari16'],
  outdir,
  legalComments: 'linked',
  logLevel: 'info',
});
