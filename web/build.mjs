// Builds dist/: the app's bundles under hashed names (cached for a year)
// and index.html naming them. `make web` runs this; dist/ is committed so
// `go build` needs no npm. WEB_OUT names another output directory: `make
// check` builds there and compares with the committed dist/.
import * as esbuild from 'esbuild';
import {rmSync, mkdirSync, writeFileSync} from 'node:fs';
import {basename, dirname} from 'node:path';
import {fileURLToPath} from 'node:url';

process.chdir(dirname(fileURLToPath(import.meta.url)));
const out = process.env.WEB_OUT || 'dist';

rmSync(out, {recursive: true, force: true});
mkdirSync(`${out}/assets`, {recursive: true});
const result = await esbuild.build({
  entryPoints: ['src/main.js', 'src/app.css'],
  bundle: true, splitting: true, format: 'esm', minify: true, target: 'es2022',
  outdir: `${out}/assets`, entryNames: '[name]-[hash]', chunkNames: 'chunk-[hash]', assetNames: '[name]-[hash]',
  metafile: true, legalComments: 'linked', logLevel: 'warning', absWorkingDir: process.cwd(),
});
const outs = Object.entries(result.metafile.outputs);
const js = outs.find(([, o]) => o.entryPoint === 'src/main.js')[0];
const css = outs.find(([, o]) => o.entryPoint === 'src/app.css')[0];
// Chunks the entry imports at load time are fetched beside it, not after.
const preload = result.metafile.outputs[js].imports.filter(i => i.kind === 'import-statement')
  .map(i => `<link rel="modulepreload" href="/assets/${basename(i.path)}">\n`).join('');
writeFileSync(`${out}/index.html`, `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>kumo</title>
<link rel="stylesheet" href="/assets/${basename(css)}">
${preload}<script type="module" src="/assets/${basename(js)}"></script>
</head>
<body>
<div id="app"><noscript>kumo's web console needs JavaScript; the CLI and the REST API need none.</noscript></div>
</body>
</html>
`);
for (const [f, o] of outs) console.log(f, o.bytes);
