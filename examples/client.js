// Port of Racket's client.js: opens a WebSocket (default ws://localhost:8081/test, or the host
// that served this page), sends "Hi there", shows every message, sends "goodbye" at the 10th
// message, and shows the close code and reason. A classic script (no modules) so that it works
// from file:// too.
//
// Query parameters preset the form: ?server=ws://127.0.0.1:8081&path=/test&protocol=subprotocol
// and &autoconnect=0 to wait for the Connect button (default: connect on load, like Racket).
(function () {
  'use strict';

  var params = new URLSearchParams(window.location.search);
  var served = window.location.protocol === 'http:' || window.location.protocol === 'https:';
  var defaultServer = served
    ? (window.location.protocol === 'https:' ? 'wss://' : 'ws://') + window.location.host
    : 'ws://localhost:8081';

  var $ = function (id) { return document.getElementById(id); };
  var socket = null;
  var count = 0;

  function log(kind, text) {
    var li = document.createElement('li');
    li.className = kind;
    li.textContent = text;
    $('log').appendChild(li);
    console.log(kind === 'sent' ? '> ' + text : kind === 'received' ? '< ' + text : text);
  }

  function setStatus(text) {
    $('status').textContent = text;
  }

  function send(text) {
    socket.send(text);
    log('sent', text);
  }

  function describe(data) {
    if (typeof data === 'string') return data;
    return '[binary, ' + (data.byteLength !== undefined ? data.byteLength : data.size) + ' bytes]';
  }

  function connect() {
    if (socket) socket.close();
    var url = $('server').value.replace(/\/+$/, '') + $('path').value;
    var protocol = $('protocol').value.trim();
    count = 0;
    $('count').textContent = '0';
    $('close-code').textContent = '-';
    $('close-reason').textContent = '-';
    $('log').textContent = '';
    log('info', 'connecting to ' + url + (protocol ? ' with subprotocol ' + protocol : ''));
    setStatus('connecting');
    var ws;
    try {
      ws = protocol ? new WebSocket(url, protocol) : new WebSocket(url);
    } catch (e) {
      log('error', 'cannot connect: ' + e.message);
      setStatus('error');
      return;
    }
    ws.binaryType = 'arraybuffer';
    socket = ws;
    $('disconnect').disabled = false;

    ws.onopen = function () {
      if (ws !== socket) return;
      setStatus('open');
      log('info', 'open' + (ws.protocol ? ' (subprotocol ' + ws.protocol + ')' : ''));
      send('Hi there');
    };
    ws.onmessage = function (e) {
      if (ws !== socket) return;
      count += 1;
      $('count').textContent = String(count);
      log('received', describe(e.data));
      if (count === 10) send('goodbye');
    };
    ws.onerror = function () {
      if (ws !== socket) return;
      log('error', 'WebSocket error (see the console for details)');
    };
    ws.onclose = function (e) {
      if (ws !== socket) return;
      setStatus('closed');
      $('close-code').textContent = String(e.code);
      $('close-reason').textContent = e.reason === '' ? '(none)' : e.reason;
      log('info', 'closed: code ' + e.code + (e.reason ? ', reason ' + e.reason : '') + (e.wasClean ? '' : ' (not clean)'));
      $('disconnect').disabled = true;
    };
  }

  window.addEventListener('load', function () {
    $('server').value = params.get('server') || defaultServer;
    $('path').value = params.get('path') || '/test';
    $('protocol').value = params.get('protocol') || '';
    $('controls').addEventListener('submit', function (e) {
      e.preventDefault();
      connect();
    });
    $('disconnect').addEventListener('click', function () {
      if (socket) socket.close(1000, 'closed from the page');
    });
    if (params.get('autoconnect') !== '0') connect();
  });
})();
