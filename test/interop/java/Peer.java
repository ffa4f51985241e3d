/*
 * java.net.http.HttpClient's WebSocket client (JDK 11+) as a client peer for
 * test/interop/more-peers.test.ts, driven by line commands on stdin, reporting JSON lines on stdout
 * (the formats of the other more-peers scripts, see more-peers.test.ts). Run as `java Peer.java`:
 * one JVM serves every connection of the test file.
 *
 *   connect ID URL PROTOCOLS(comma-separated) DEFLATE(ignored: the JDK has no permessage-deflate)
 *   send ID t|b BASE64 / fragments ID t|b BASE64 SIZE (text: parts of SIZE UTF-16 units, a
 *   surrogate pair may be cut; binary: SIZE bytes) / ping ID BASE64 / close ID CODE BASE64-REASON /
 *   burst ID N
 *
 * Sends on one connection are chained: the JDK allows one outstanding send at a time.
 */
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.WebSocket;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Base64;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ConcurrentHashMap;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;

public class Peer {
  static final PrintStream OUT = new PrintStream(new java.io.FileOutputStream(java.io.FileDescriptor.out), true, StandardCharsets.UTF_8);
  static final HttpClient CLIENT = HttpClient.newHttpClient();
  static final Map<Integer, Conn> CONNS = new ConcurrentHashMap<>();

  static synchronized void report(String json) {
    OUT.println(json);
  }

  static String str(String s) {
    if (s == null) return "null";
    StringBuilder b = new StringBuilder("\"");
    for (char c : s.toCharArray()) {
      if (c == '"' || c == '\\') b.append('\\').append(c);
      else if (c < 0x20 || c > 0x7e) b.append(String.format("\\u%04x", (int) c));
      else b.append(c);
    }
    return b.append('"').toString();
  }

  static String b64(byte[] bytes) {
    return str(Base64.getEncoder().encodeToString(bytes));
  }

  static byte[] bytesOf(ByteBuffer buf) {
    byte[] b = new byte[buf.remaining()];
    buf.get(b);
    return b;
  }

  static final class Conn implements WebSocket.Listener {
    final int id;
    WebSocket ws;
    CompletableFuture<?> sending = CompletableFuture.completedFuture(null);
    final StringBuilder text = new StringBuilder();
    final java.io.ByteArrayOutputStream binary = new java.io.ByteArrayOutputStream();

    Conn(int id) {
      this.id = id;
    }

    /** Chains a send after the previous one; a failure is reported. */
    synchronized void send(String op, java.util.function.Function<WebSocket, CompletableFuture<?>> action) {
      sending = sending.thenCompose(x -> action.apply(ws)).exceptionally(e -> {
        report("{\"ev\":\"error\",\"id\":" + id + ",\"op\":" + str(op) + ",\"message\":" + str(String.valueOf(e)) + "}");
        return null;
      });
    }

    @Override
    public CompletionStage<?> onText(WebSocket ws, CharSequence data, boolean last) {
      text.append(data);
      if (last) {
        report("{\"ev\":\"message\",\"id\":" + id + ",\"type\":\"t\",\"b64\":" + b64(text.toString().getBytes(StandardCharsets.UTF_8)) + "}");
        text.setLength(0);
      }
      ws.request(1);
      return null;
    }

    @Override
    public CompletionStage<?> onBinary(WebSocket ws, ByteBuffer data, boolean last) {
      binary.writeBytes(bytesOf(data));
      if (last) {
        report("{\"ev\":\"message\",\"id\":" + id + ",\"type\":\"b\",\"b64\":" + b64(binary.toByteArray()) + "}");
        binary.reset();
      }
      ws.request(1);
      return null;
    }

    @Override
    public CompletionStage<?> onPing(WebSocket ws, ByteBuffer message) {
      // The JDK answers with a pong by itself.
      report("{\"ev\":\"ping\",\"id\":" + id + ",\"b64\":" + b64(bytesOf(message)) + "}");
      ws.request(1);
      return null;
    }

    @Override
    public CompletionStage<?> onPong(WebSocket ws, ByteBuffer message) {
      report("{\"ev\":\"pong\",\"id\":" + id + ",\"b64\":" + b64(bytesOf(message)) + "}");
      ws.request(1);
      return null;
    }

    @Override
    public CompletionStage<?> onClose(WebSocket ws, int code, String reason) {
      // Returning null: the JDK then answers the close frame by itself (if it has not sent one).
      report("{\"ev\":\"closed\",\"id\":" + id + ",\"code\":" + code + ",\"reason\":" + b64(reason.getBytes(StandardCharsets.UTF_8)) + "}");
      return null;
    }

    @Override
    public void onError(WebSocket ws, Throwable error) {
      report("{\"ev\":\"error\",\"id\":" + id + ",\"op\":\"recv\",\"message\":" + str(String.valueOf(error)) + "}");
      report("{\"ev\":\"closed\",\"id\":" + id + ",\"code\":null,\"reason\":null}");
    }
  }

  static void command(String[] w) {
    String op = w[0];
    int id = Integer.parseInt(w[1]);
    if (op.equals("connect")) {
      Conn conn = new Conn(id);
      CONNS.put(id, conn);
      WebSocket.Builder builder = CLIENT.newWebSocketBuilder();
      String[] protocols = w[3].isEmpty() ? new String[0] : w[3].split(",");
      if (protocols.length > 0) builder.subprotocols(protocols[0], java.util.Arrays.copyOfRange(protocols, 1, protocols.length));
      builder.buildAsync(URI.create(w[2]), conn).whenComplete((ws, e) -> {
        if (e != null) {
          report("{\"ev\":\"error\",\"id\":" + id + ",\"op\":\"connect\",\"message\":" + str(String.valueOf(e)) + "}");
          return;
        }
        conn.ws = ws;
        report("{\"ev\":\"open\",\"id\":" + id + ",\"protocol\":" + str(ws.getSubprotocol()) + ",\"extensions\":\"\"}");
      });
      return;
    }
    Conn conn = CONNS.get(id);
    switch (op) {
      case "send": {
        byte[] data = Base64.getDecoder().decode(w[3]);
        if (w[2].equals("t")) conn.send(op, ws -> ws.sendText(new String(data, StandardCharsets.UTF_8), true));
        else conn.send(op, ws -> ws.sendBinary(ByteBuffer.wrap(data), true));
        break;
      }
      case "fragments": {
        byte[] data = Base64.getDecoder().decode(w[3]);
        int size = Integer.parseInt(w[4]);
        if (w[2].equals("t")) {
          String s = new String(data, StandardCharsets.UTF_8);
          // sendText fails ("Malformed text message") on a part that ends inside a surrogate
          // pair: each part ends before a cut pair instead.
          for (int i = 0, end; i < s.length() || i == 0; i = end) {
            end = Math.min(s.length(), i + size);
            if (end < s.length() && Character.isLowSurrogate(s.charAt(end))) end--;
            String part = s.substring(i, end);
            boolean last = end >= s.length();
            conn.send(op, ws -> ws.sendText(part, last));
            if (last) break;
          }
        } else {
          for (int i = 0; i < data.length || i == 0; i += size) {
            ByteBuffer part = ByteBuffer.wrap(data, i, Math.min(data.length, i + size) - i);
            boolean last = i + size >= data.length;
            conn.send(op, ws -> ws.sendBinary(part, last));
          }
        }
        break;
      }
      case "ping": {
        byte[] data = Base64.getDecoder().decode(w[2]);
        conn.send(op, ws -> ws.sendPing(ByteBuffer.wrap(data)));
        break;
      }
      case "close": {
        String reason = new String(Base64.getDecoder().decode(w[3]), StandardCharsets.UTF_8);
        int code = Integer.parseInt(w[2]);
        conn.send(op, ws -> ws.sendClose(code, reason));
        break;
      }
      case "burst": {
        int n = Integer.parseInt(w[2]);
        for (int i = 0; i < n; i++) {
          String m = "burst " + i;
          conn.send(op, ws -> ws.sendText(m, true));
        }
        conn.send(op, ws -> ws.sendClose(1000, "burst done"));
        break;
      }
      default:
        report("{\"ev\":\"error\",\"id\":" + id + ",\"op\":" + str(op) + ",\"message\":\"unknown command\"}");
    }
  }

  public static void main(String[] args) throws Exception {
    BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    report("{\"ev\":\"ready\"}");
    for (String line; (line = in.readLine()) != null; ) {
      String[] w = line.split(" ", -1);
      try {
        command(w);
      } catch (RuntimeException e) {
        report("{\"ev\":\"error\",\"id\":" + w[1] + ",\"op\":" + str(w[0]) + ",\"message\":" + str(String.valueOf(e)) + "}");
      }
    }
    System.exit(0);
  }
}
