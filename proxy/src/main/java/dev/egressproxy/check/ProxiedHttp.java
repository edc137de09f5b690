package dev.egressproxy.check;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLException;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSocket;

/**
 * A small HTTP/1.1 client through a forward proxy, one connection per request: {@code CONNECT}
 * and then TLS (with SNI and host name verification) for {@code https}, the absolute-form request
 * for {@code http}. The JDK's {@code HttpClient} turns a refused CONNECT into
 * {@code IOException("Tunnel failed, got: 403")} and drops the proxy's reason phrase and
 * {@code X-Egress-Proxy-Reason} header, which say why; this client keeps the proxy's answer whole.
 * Bodies are read up to a bound and the connection then closed, so a blob is never downloaded.
 */
final class ProxiedHttp {

    static final String REASON_HEADER = "x-egress-proxy-reason";
    private static final int MAX_HEAD = 64 * 1024;

    private final ProxyAddress proxy;
    private final SSLContext ssl;
    private final SSLContext proxySsl;
    private final int timeoutMillis;

    /**
     * @param ssl the trust for the registries and CDNs (TLS inside the tunnels)
     * @param proxySsl the trust for the proxy's own certificate when {@code proxy} is {@code https://}
     */
    ProxiedHttp(ProxyAddress proxy, SSLContext ssl, SSLContext proxySsl, Duration timeout) {
        this.proxy = proxy;
        this.ssl = ssl;
        this.proxySsl = proxySsl;
        this.timeoutMillis = (int) Math.min(Integer.MAX_VALUE, timeout.toMillis());
    }

    /** The TLS context: the CAs of {@code caFile}, else the JDK's default trust store. */
    static SSLContext trust(Path caFile) throws Exception {
        if (caFile == null) {
            return SSLContext.getDefault();
        }
        HostCheck.Trust t = HostCheck.Trust.caFile(caFile);
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(null, new javax.net.ssl.TrustManager[] {t.manager()}, null);
        return ctx;
    }

    /**
     * An answer. {@code fromProxy}: the proxy answered itself (a refused CONNECT, or a plain-HTTP
     * answer carrying its reason header), so {@code reason} is the proxy's phrase.
     */
    record Response(int status, String reason, Map<String, List<String>> headers, byte[] body, boolean fromProxy) {
        String header(String name) {
            List<String> v = headers.get(name.toLowerCase(Locale.ROOT));
            return v == null || v.isEmpty() ? null : v.get(0);
        }

        List<String> headers(String name) {
            return headers.getOrDefault(name.toLowerCase(Locale.ROOT), List.of());
        }
    }

    /**
     * The proxy itself cannot be used, whatever the destination: it cannot be reached, TLS with it
     * failed, it does not speak HTTP, or it refused the check's proxy credentials (407, or an
     * authentication {@code 429}/{@code 503}).
     */
    static final class ProxyFailed extends IOException {
        private static final long serialVersionUID = 1L;

        ProxyFailed(String message) {
            super(message);
        }
    }

    /** The origin answered the tunnel but the TLS handshake with it failed. */
    static final class TlsFailed extends IOException {
        private static final long serialVersionUID = 1L;

        TlsFailed(String message) {
            super(message);
        }
    }

    Response send(String method, URI uri, Map<String, String> headers, int maxBody) throws IOException {
        boolean https = "https".equalsIgnoreCase(uri.getScheme());
        // URI.getHost() keeps the brackets of an IPv6 literal, as the Host header and authority want them.
        String bracketed = uri.getHost();
        String host = bracketed.replaceAll("^\\[|\\]$", "");
        int port = uri.getPort() > 0 ? uri.getPort() : https ? 443 : 80;
        String authority = bracketed + ":" + port;
        Socket socket = connectToProxy();
        try {
            String hostHeader = port == (https ? 443 : 80) ? bracketed : authority;
            String proxyAuthorization = proxy.proxyAuthorization();
            String target;
            InputStream in;
            OutputStream out;
            if (https) {
                OutputStream raw = socket.getOutputStream();
                raw.write(("CONNECT " + authority + " HTTP/1.1\r\nHost: " + authority + "\r\n"
                        + (proxyAuthorization == null ? "" : "Proxy-Authorization: " + proxyAuthorization + "\r\n") + "\r\n")
                        .getBytes(StandardCharsets.UTF_8));
                raw.flush();
                InputStream rawIn = socket.getInputStream();
                Response connect;
                try {
                    connect = readResponse(rawIn, "CONNECT", 16 * 1024, true);
                } catch (SocketTimeoutException e) {
                    throw e;
                } catch (IOException e) {
                    throw new ProxyFailed("the proxy at " + proxy + " gave no HTTP answer to CONNECT " + authority + ": " + e.getMessage()
                            + (proxy.tls() ? "" : " (if its port speaks TLS, listen.tls, write the proxy as https://"
                                    + proxy.authority() + ")"));
                }
                if (connect.status() != 200) {
                    refusedByProxy(connect, authority);
                    return connect;
                }
                SSLSocket tls = (SSLSocket) ssl.getSocketFactory().createSocket(socket, host, port, true);
                SSLParameters params = tls.getSSLParameters();
                params.setEndpointIdentificationAlgorithm("HTTPS");
                tls.setSSLParameters(params);
                try {
                    tls.startHandshake();
                } catch (SSLException e) {
                    throw new TlsFailed(HostCheck.tlsText(e, host));
                }
                in = tls.getInputStream();
                out = tls.getOutputStream();
                target = uri.getRawPath() + (uri.getRawQuery() == null ? "" : "?" + uri.getRawQuery());
            } else {
                in = socket.getInputStream();
                out = socket.getOutputStream();
                target = uri.toString();
            }
            StringBuilder req = new StringBuilder();
            req.append(method).append(' ').append(target.isEmpty() ? "/" : target).append(" HTTP/1.1\r\n");
            req.append("Host: ").append(hostHeader).append("\r\n");
            req.append("User-Agent: egress-proxy-check\r\n");
            if (!https && proxyAuthorization != null) {
                // Plain HTTP goes to the proxy in absolute form: the request itself carries the proxy's credentials.
                req.append("Proxy-Authorization: ").append(proxyAuthorization).append("\r\n");
            }
            headers.forEach((k, v) -> req.append(k).append(": ").append(v).append("\r\n"));
            req.append("Connection: close\r\n\r\n");
            out.write(req.toString().getBytes(StandardCharsets.UTF_8));
            out.flush();
            Response r = readResponse(in, method, maxBody, false);
            if (https) {
                return r;
            }
            Response plain = new Response(r.status(), r.reason(), r.headers(), r.body(), r.header(REASON_HEADER) != null);
            if (plain.fromProxy()) {
                refusedByProxy(plain, authority);
            }
            return plain;
        } catch (SocketTimeoutException e) {
            throw new SocketTimeoutException("no answer within " + HostCheck.human(Duration.ofMillis(timeoutMillis)));
        } finally {
            socket.close();
        }
    }

    /** A connection to the proxy, TLS already done when it is an {@code https://} proxy. */
    private Socket connectToProxy() throws IOException {
        Socket socket = new Socket();
        try {
            try {
                socket.connect(new InetSocketAddress(proxy.host(), proxy.port()), timeoutMillis);
            } catch (IOException e) {
                throw new ProxyFailed("cannot connect to the proxy at " + proxy + ": " + e.getMessage());
            }
            socket.setSoTimeout(timeoutMillis);
            if (!proxy.tls()) {
                return socket;
            }
            SSLSocket tls = (SSLSocket) proxySsl.getSocketFactory().createSocket(socket, proxy.host(), proxy.port(), true);
            SSLParameters params = tls.getSSLParameters();
            // The proxy's certificate must name the host of the proxy URL, as curl and Go check it.
            params.setEndpointIdentificationAlgorithm("HTTPS");
            tls.setSSLParameters(params);
            try {
                tls.startHandshake();
            } catch (SocketTimeoutException e) {
                throw new ProxyFailed("TLS with the proxy at " + proxy + ": no handshake within "
                        + HostCheck.human(Duration.ofMillis(timeoutMillis)));
            } catch (IOException e) {
                String text = HostCheck.tlsText(e, proxy.host());
                throw new ProxyFailed("TLS with the proxy at " + proxy + " failed: " + text
                        + (text.startsWith("certificate not trusted") ? "; pass the proxy's CA with --proxy-cacert" : ""));
            }
            return tls;
        } catch (IOException | RuntimeException e) {
            socket.close();
            throw e;
        }
    }

    /**
     * Throws when the proxy's own answer is about the check's proxy credentials, which no other
     * destination would change: 407, and the 429 and 503 of its authentication.
     */
    private void refusedByProxy(Response r, String target) throws ProxyFailed {
        String code = r.header(REASON_HEADER);
        boolean authFailure = r.status() == 407 || (code != null && code.startsWith("auth_"));
        if (!authFailure) {
            return;
        }
        String answer = r.status() + " " + r.reason() + (code == null ? "" : " (" + code + ")");
        if (r.status() != 407) {
            throw new ProxyFailed("the proxy at " + proxy + " answered " + answer + " for " + target);
        }
        throw new ProxyFailed(proxy.user() == null
                ? "the proxy at " + proxy + " wants a user name and password: " + answer + " for " + target
                        + "; write them in the proxy URL, --proxy http://USER:PASSWORD@" + proxy.authority()
                : "the proxy at " + proxy + " refused the credentials of user " + proxy.user() + ": " + answer + " for " + target);
    }

    private static Response readResponse(InputStream in, String method, int maxBody, boolean fromProxy) throws IOException {
        String head = readHead(in);
        String[] lines = head.split("\r\n");
        String[] status = lines[0].split(" ", 3);
        if (status.length < 2 || !status[0].startsWith("HTTP/1.")) {
            throw new IOException("not an HTTP response: " + lines[0]);
        }
        int code;
        try {
            code = Integer.parseInt(status[1]);
        } catch (NumberFormatException e) {
            throw new IOException("not an HTTP status line: " + lines[0]);
        }
        Map<String, List<String>> headers = new LinkedHashMap<>();
        for (int i = 1; i < lines.length; i++) {
            int colon = lines[i].indexOf(':');
            if (colon > 0) {
                headers.computeIfAbsent(lines[i].substring(0, colon).trim().toLowerCase(Locale.ROOT), k -> new ArrayList<>())
                        .add(lines[i].substring(colon + 1).trim());
            }
        }
        byte[] body = new byte[0];
        boolean bodiless = method.equals("HEAD") || code / 100 == 1 || code == 204 || code == 304
                || (method.equals("CONNECT") && code == 200);
        if (!bodiless && maxBody > 0) {
            body = readBody(in, headers, maxBody);
        }
        return new Response(code, status.length > 2 ? status[2] : "", headers, body, fromProxy);
    }

    private static String readHead(InputStream in) throws IOException {
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        int matched = 0;
        while (matched < 4) {
            int b = in.read();
            if (b < 0) {
                throw new IOException(buf.size() == 0 ? "connection closed without an answer" : "connection closed in the response head");
            }
            buf.write(b);
            matched = (b == '\r' && (matched == 0 || matched == 2)) || (b == '\n' && (matched == 1 || matched == 3)) ? matched + 1
                    : b == '\r' ? 1 : 0;
            if (buf.size() > MAX_HEAD) {
                throw new IOException("response head larger than " + MAX_HEAD + " bytes");
            }
        }
        String s = buf.toString(StandardCharsets.ISO_8859_1);
        return s.substring(0, s.length() - 4);
    }

    private static byte[] readBody(InputStream in, Map<String, List<String>> headers, int max) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        List<String> te = headers.getOrDefault("transfer-encoding", List.of());
        if (te.stream().anyMatch(v -> v.toLowerCase(Locale.ROOT).contains("chunked"))) {
            while (out.size() < max) {
                String line = readLine(in);
                int semi = line.indexOf(';');
                int size = Integer.parseInt((semi >= 0 ? line.substring(0, semi) : line).trim(), 16);
                if (size == 0) {
                    break;
                }
                copy(in, out, Math.min(size, max - out.size()));
                if (out.size() >= max) {
                    break;
                }
                readLine(in);
            }
            return out.toByteArray();
        }
        List<String> cl = headers.getOrDefault("content-length", List.of());
        long length = cl.isEmpty() ? Long.MAX_VALUE : Long.parseLong(cl.get(0).trim());
        copy(in, out, (int) Math.min(length, max));
        return out.toByteArray();
    }

    private static void copy(InputStream in, ByteArrayOutputStream out, int n) throws IOException {
        byte[] buf = new byte[8192];
        int left = n;
        while (left > 0) {
            int r = in.read(buf, 0, Math.min(buf.length, left));
            if (r < 0) {
                return;
            }
            out.write(buf, 0, r);
            left -= r;
        }
    }

    private static String readLine(InputStream in) throws IOException {
        StringBuilder sb = new StringBuilder();
        int b;
        while ((b = in.read()) >= 0 && b != '\n') {
            if (b != '\r') {
                sb.append((char) b);
            }
        }
        return sb.toString();
    }
}
