# Mojolicious (Debian's libmojolicious-perl) as a peer for test/interop/more-peers.test.ts, in
# either role, driven by line commands on stdin, reporting JSON lines on stdout (the formats of the
# other more-peers scripts, see more-peers.test.ts).
#
# argv: ROLE(server|client) CONFIG(JSON)
#   server CONFIG: {"deflate": 0|1 (with_compression: permessage-deflate when offered),
#     "maxSize": bytes (max_websocket_size)}; a Mojolicious::Lite app whose websocket route echoes
#     every message with its type, agrees to "chat.v1" when offered it; prints
#     {"ev":"listening","port":N}; the connections it accepts are numbered from 1.
#   client CONFIG: {"maxSize": bytes}; Mojo::UserAgent->websocket for each "connect" command.
# Commands (stdin):
#   connect ID URL PROTOCOLS(comma-separated) DEFLATE(0|1: offer permessage-deflate, the header
#   Mojo::UserAgent's documentation says to set)
#   send ID t|b BASE64 / fragments ID t|b BASE64 SIZE (raw frames of SIZE bytes, uncompressed) /
#   badutf8 ID / ping ID BASE64 / close ID CODE('' for none) BASE64-REASON / burst ID N
use Mojo::Base -strict;
use Mojolicious::Lite;
use Mojo::IOLoop;
use Mojo::IOLoop::Stream;
use Mojo::JSON qw(decode_json encode_json);
use Mojo::UserAgent;
use Mojo::Util qw(b64_decode b64_encode decode encode);
use Mojo::WebSocket qw(WS_BINARY WS_CLOSE WS_CONTINUATION WS_PING WS_PONG WS_TEXT);

my ($role, $config) = ($ARGV[0], decode_json($ARGV[1] // '{}'));
my $max = $config->{maxSize} // 64 * 1024 * 1024;
my %conns;
my $next_id = 0;
$| = 1;

sub report { print encode_json({@_}) . "\n" }
sub b64 { b64_encode($_[0] // '', '') }

# Reports what happens on one connection ($tx: a Mojo::Transaction::WebSocket); $echo: echo back.
sub watch {
  my ($id, $tx, $echo) = @_;
  $conns{$id} = $tx;
  $tx->max_websocket_size($max);
  $tx->on(text => sub {
    my ($tx, $bytes) = @_;
    report(ev => 'message', id => $id, type => 't', b64 => b64($bytes));
    $tx->send({text => $bytes}) if $echo;
  });
  $tx->on(binary => sub {
    my ($tx, $bytes) = @_;
    report(ev => 'message', id => $id, type => 'b', b64 => b64($bytes));
    $tx->send({binary => $bytes}) if $echo;
  });
  $tx->on(frame => sub {
    my ($tx, $frame) = @_;
    # Mojo answers a ping with a pong by itself.
    report(ev => 'ping', id => $id, b64 => b64($frame->[5])) if $frame->[4] == WS_PING;
    report(ev => 'pong', id => $id, b64 => b64($frame->[5])) if $frame->[4] == WS_PONG;
  });
  $tx->on(finish => sub {
    my ($tx, $code, $reason) = @_;
    report(ev => 'closed', id => $id, code => $code, reason => defined $reason ? b64(encode('UTF-8', $reason)) : undef);
    delete $conns{$id};
  });
  report(ev => 'open', id => $id, protocol => $tx->protocol, extensions => $tx->res->headers->sec_websocket_extensions // '',
    compressed => $tx->compressed ? \1 : \0);
}

sub command {
  my @w = split / /, shift, -1;
  my ($op, $id) = @w[0, 1];
  if ($op eq 'connect') {
    my $ua = Mojo::UserAgent->new(inactivity_timeout => 0);
    my @protocols = grep {length} split /,/, $w[3];
    my $headers = $w[4] ? {'Sec-WebSocket-Extensions' => 'permessage-deflate'} : {};
    $conns{"ua$id"} = $ua;
    $ua->websocket($w[2] => $headers => \@protocols => sub {
      my ($ua, $tx) = @_;
      return report(ev => 'error', id => $id + 0, op => 'connect', message => $tx->res->error ? $tx->res->error->{message} : 'not a WebSocket')
        unless $tx->is_websocket;
      watch($id + 0, $tx, 0);
    });
    return;
  }
  my $tx = $conns{$id} or return report(ev => 'error', id => $id + 0, op => $op, message => 'no such connection');
  if ($op eq 'send') { $tx->send({($w[2] eq 't' ? 'text' : 'binary') => b64_decode($w[3])}) }
  elsif ($op eq 'fragments') {
    my ($data, $size) = (b64_decode($w[3]), $w[4]);
    my @parts = length $data ? unpack("(a$size)*", $data) : ('');
    for my $i (0 .. $#parts) {
      my $opcode = $i ? WS_CONTINUATION : $w[2] eq 't' ? WS_TEXT : WS_BINARY;
      $tx->send([$i == $#parts ? 1 : 0, 0, 0, 0, $opcode, $parts[$i]]);
    }
  }
  elsif ($op eq 'badutf8') { $tx->send([1, 0, 0, 0, WS_TEXT, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"]) }
  elsif ($op eq 'ping')    { $tx->send([1, 0, 0, 0, WS_PING, b64_decode($w[2])]) }
  elsif ($op eq 'close') {
    if (length $w[2]) { $tx->finish($w[2], decode('UTF-8', b64_decode($w[3]))) }
    else              { $tx->finish }
  }
  elsif ($op eq 'burst') {
    $tx->send("burst $_") for 0 .. $w[2] - 1;
    $tx->finish(1000, 'burst done');
  }
}

my $buffer = '';
my $stdin = Mojo::IOLoop::Stream->new(\*STDIN)->timeout(0);
$stdin->on(read => sub {
  $buffer .= $_[1];
  while ($buffer =~ s/^([^\n]*)\n//) {
    my $line = $1;
    next unless length $line;
    eval { command($line); 1 } or report(ev => 'error', op => 'command', message => "$@");
  }
});
$stdin->on(close => sub { Mojo::IOLoop->stop });
Mojo::IOLoop->stream($stdin);

my $daemon;
if ($role eq 'server') {
  app->log->level('fatal');
  websocket '/' => sub {
    my $c = shift;
    $c->inactivity_timeout(0);
    $c->tx->with_compression if $config->{deflate};
    $c->tx->with_protocols('chat.v1');
    watch(++$next_id, $c->tx, 1);
    $c->rendered(101);  # the handshake response (Controller::on does it; the tx's own on() does not)
  };
  $daemon = Mojo::Server::Daemon->new(app => app, listen => ['http://127.0.0.1:0'], silent => 1);
  $daemon->start;
  report(ev => 'listening', port => $daemon->ports->[0] + 0);
}
else { report(ev => 'ready') }

Mojo::IOLoop->start;
