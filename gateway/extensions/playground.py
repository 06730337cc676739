"""``/v2/_zot/debug/graphql-playground``: a self-contained page to try GraphQL queries
(``extensions.debug.enable``). No external assets: a query box, a variables box, and the
answer of ``POST /v2/_zot/ext/search``."""

from __future__ import annotations

from quart import Response

EXAMPLE = """{
  RepoListWithNewestImage(requestedPage: {limit: 10, offset: 0, sortBy: UPDATE_TIME}) {
    Page { TotalCount ItemCount }
    Results { Name LastUpdated Size StarCount NewestImage { Tag Digest IsSigned } }
  }
}"""

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>shardreg GraphQL playground</title>
<style>
 body { font-family: sans-serif; margin: 1em; }
 textarea, pre { width: 100%; font-family: monospace; font-size: 13px; box-sizing: border-box; }
 #query { height: 16em; } #variables { height: 4em; }
 pre { background: #f4f4f4; padding: .5em; min-height: 10em; white-space: pre-wrap; }
</style></head>
<body>
<h1>GraphQL playground</h1>
<p>Endpoint: <code>/v2/_zot/ext/search</code>. Ctrl+Enter runs the query.</p>
<label>Query</label><textarea id="query">__EXAMPLE__</textarea>
<label>Variables (JSON)</label><textarea id="variables">{}</textarea>
<p><button id="run">Run</button></p>
<pre id="result"></pre>
<script>
async function run() {
  const out = document.getElementById('result');
  let variables = {};
  try { variables = JSON.parse(document.getElementById('variables').value || '{}'); }
  catch (e) { out.textContent = 'variables: ' + e; return; }
  const response = await fetch('/v2/_zot/ext/search', {method: 'POST', credentials: 'same-origin',
    headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({query: document.getElementById('query').value, variables})});
  const text = await response.text();
  try { out.textContent = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { out.textContent = text; }
}
document.getElementById('run').onclick = run;
document.addEventListener('keydown', e => { if (e.ctrlKey && e.key === 'Enter') run(); });
</script>
</body></html>
"""


async def playground() -> Response:
    import html

    return Response(PAGE.replace("__EXAMPLE__", html.escape(EXAMPLE)).encode(), status=200,
                    content_type="text/html; charset=utf-8")
