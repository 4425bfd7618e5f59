// teeml dashboard: live updates. The server pushes an "update" event
// (server-sent events) when its data changed; the page then fetches its
// own content again (?partial=1) and swaps it in, without a reload.
(function () {
  'use strict';
  var main = document.getElementById('content');
  var live = document.getElementById('live');
  if (!main || !live || typeof EventSource === 'undefined') {
    return;
  }
  var version = main.getAttribute('data-version');
  var busy = false, again = false;

  function show(text, cls) {
    live.textContent = text;
    live.className = 'live ' + cls;
  }

  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    var u = new URL(window.location.href);
    u.searchParams.set('partial', '1');
    fetch(u.toString(), { credentials: 'same-origin', cache: 'no-store' })
      .then(function (r) {
        if (!r.ok) { throw new Error('HTTP ' + r.status); }
        return r.text();
      })
      .then(function (html) {
        main.innerHTML = html;
        var inner = main.querySelector('[data-version]');
        if (inner) {
          version = inner.getAttribute('data-version');
          main.setAttribute('data-version', version);
        }
        show('live · updated ' + new Date().toLocaleTimeString(), 'ok');
      })
      .catch(function (e) { show('update failed: ' + e.message, 'err'); })
      .then(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }

  var es = new EventSource('/events');
  es.addEventListener('hello', function (e) {
    show('live', 'ok');
    if (version !== null && e.data !== version) { refresh(); }
  });
  es.addEventListener('update', function () { refresh(); });
  es.onerror = function () { show('reconnecting…', 'warn'); };
})();
