// Live pages: htmx's SSE extension does the streaming; this file only keeps each stream's resume point, and
// falls back to polling the same changes when a stream cannot connect (a proxy that strips or buffers SSE).
// Every element with [data-live] is one live region: data-stream (its events URL), data-after (the last
// revision it has shown), data-query (extra query parameters).
(function () {
  'use strict'
  // No event at all by then: the stream does not get through (CARPWEB_LIVE_FALLBACK_MS, on <body>).
  var FALLBACK_AFTER_MS = 4000
  var POLL_MS = 1000

  function streamUrl (root, extra) {
    var parts = [root.dataset.query, extra, 'after=' + root.dataset.after].filter(Boolean)
    return root.dataset.stream + '?' + parts.join('&')
  }

  function remember (root, id) {
    if (!id || !/^\d+$/.test(id) || Number(id) <= Number(root.dataset.after)) return
    root.dataset.after = id
    // htmx re-reads sse-connect when it has to open a new EventSource: it resumes from here.
    if (root.hasAttribute('sse-connect')) root.setAttribute('sse-connect', streamUrl(root))
  }

  function poll (root) {
    if (root.dataset.polling) return
    root.dataset.polling = '1'
    root.removeAttribute('sse-connect')
    if (root._carpwebSource) root._carpwebSource.close()
    var sink = root.querySelector('[sse-swap]') || root
    var inflight = false
    var timer = window.setInterval(function () {
      // One poll at a time: a slow answer must not overlap the next tick, which would ask from the same point
      // and bring the same changes (or a second copy of the plan) again.
      if (inflight) return
      inflight = true
      window.fetch(streamUrl(root, 'format=fragments'), { headers: { 'HX-Request': 'true' }, credentials: 'same-origin' })
        .then(function (response) {
          if (!response.ok) return
          var after = response.headers.get('X-Carpweb-After')
          var done = response.headers.get('X-Carpweb-Done') === '1'
          return response.text().then(function (html) {
            if (html) htmx.swap(sink, html, { swapStyle: 'none' })
            remember(root, after)
            if (done) window.clearInterval(timer)
          })
        })
        .catch(function () { /* the next tick tries again */ })
        .finally(function () { inflight = false })
    }, POLL_MS)
  }

  document.addEventListener('htmx:sseOpen', function (event) {
    var root = event.target.closest('[data-live]')
    if (!root) return
    // A stream that opens after the page began polling (a slow proxy or web process) would bring every change
    // a second time: the page keeps polling and shuts it.
    if (root.dataset.polling) { event.detail.source.close(); return }
    root._carpwebSource = event.detail.source
    event.detail.source.addEventListener('hello', function () { root.dataset.flowing = '1' })
  })
  // Each live piece of a row carries the revision it shows (data-rev): a change the page already shows, or an
  // older one (a resumed stream or a poll sends again what came after its resume point), is not swapped in.
  document.addEventListener('htmx:oobBeforeSwap', function (event) {
    var shown = event.detail.target
    var incoming = event.detail.fragment && event.detail.fragment.firstElementChild
    if (!shown || !incoming || !shown.hasAttribute('data-rev') || !incoming.hasAttribute('data-rev')) return
    if (Number(incoming.getAttribute('data-rev')) <= Number(shown.getAttribute('data-rev'))) {
      event.detail.shouldSwap = false
    }
  })
  document.addEventListener('htmx:sseBeforeMessage', function (event) {
    var root = event.target.closest('[data-live]')
    if (root && root.dataset.polling) event.preventDefault() // polling brings it; never swap it twice
  })
  document.addEventListener('htmx:sseMessage', function (event) {
    var root = event.target.closest('[data-live]')
    if (root) remember(root, event.detail.lastEventId)
  })
  document.addEventListener('htmx:sseError', function (event) {
    var root = event.target.closest('[data-live]')
    var source = event.detail.source
    if (!root || !source || source.readyState !== EventSource.CLOSED) return
    root.dataset.failures = String(Number(root.dataset.failures || 0) + 1)
    if (Number(root.dataset.failures) >= 2) poll(root)
  })
  document.addEventListener('DOMContentLoaded', function () {
    var after = Number(document.body.dataset.liveFallbackMs) || FALLBACK_AFTER_MS
    document.querySelectorAll('[data-live][sse-connect]').forEach(function (root) {
      window.setTimeout(function () { if (!root.dataset.flowing) poll(root) }, after)
    })
  })
})()
