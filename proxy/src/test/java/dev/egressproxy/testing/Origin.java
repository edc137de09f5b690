package dev.egressproxy.testing;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpHandler;
import com.sun.net.httpserver.HttpServer;
import com.sun.net.httpserver.HttpsConfigurator;
import com.sun.net.httpserver.HttpsServer;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import javax.net.ssl.SSLContext;

/**
 * A real HTTP or HTTPS origin on loopback (the JDK's HTTP server), with handlers added per path.
 * Records each request it served: method, path, Host header and the client's port (which tells
 * whether connections were reused).
 */
public final class Origin implements AutoCloseable {

    /** One request as the origin saw it. */
    public record Seen(String method, String path, Map<String, List<String>> headers, int clientPort, byte[] body) {
        public String header(String name) {
            for (Map.Entry<String, List<String>> e : headers.entrySet()) {
                if (e.getKey() != null && e.getKey().equalsIgnoreCase(name)) {
                    return String.join(",", e.getValue());
                }
            }
            return null;
        }
    }

    private final HttpServer server;
    private final ExecutorService executor = Executors.newCachedThreadPool();
    public final List<Seen> seen = new CopyOnWriteArrayList<>();
    private final Map<String, HttpHandler> routes = new ConcurrentHashMap<>();

    private Origin(HttpServer server) {
        this.server = server;
        server.setExecutor(executor);
        server.createContext("/", this::dispatch);
        server.start();
    }

    public static Origin http() throws IOException {
        return new Origin(HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 64));
    }

    public static Origin https(SSLContext ctx) throws IOException {
        HttpsServer s = HttpsServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 64);
        s.setHttpsConfigurator(new HttpsConfigurator(ctx));
        return new Origin(s);
    }

    public int port() {
        return server.getAddress().getPort();
    }

    /** Answers {@code status} with {@code body} on {@code path}. */
    public Origin respond(String path, int status, String body) {
        routes.put(path, ex -> send(ex, status, body.getBytes(StandardCharsets.UTF_8)));
        return this;
    }

    /** Answers a 302 to {@code location} on {@code path}, as the registry does for blobs. */
    public Origin redirect(String path, String location) {
        routes.put(path, ex -> {
            ex.getResponseHeaders().add("Location", location);
            send(ex, 302, new byte[0]);
        });
        return this;
    }

    public Origin route(String path, HttpHandler handler) {
        routes.put(path, handler);
        return this;
    }

    private void dispatch(HttpExchange ex) throws IOException {
        byte[] body;
        try (InputStream in = ex.getRequestBody()) {
            body = in.readAllBytes();
        }
        seen.add(new Seen(ex.getRequestMethod(), ex.getRequestURI().toString(), Map.copyOf(ex.getRequestHeaders()),
                ex.getRemoteAddress().getPort(), body));
        HttpHandler h = routes.get(ex.getRequestURI().getPath());
        if (h == null) {
            send(ex, 404, "no route\n".getBytes(StandardCharsets.UTF_8));
        } else {
            h.handle(ex);
        }
    }

    public static void send(HttpExchange ex, int status, byte[] body) throws IOException {
        boolean head = "HEAD".equals(ex.getRequestMethod());
        ex.sendResponseHeaders(status, body.length == 0 || head ? -1 : body.length);
        try (OutputStream out = ex.getResponseBody()) {
            if (!head) {
                out.write(body);
            }
        }
    }

    @Override
    public void close() {
        server.stop(0);
        executor.shutdownNow();
    }
}
