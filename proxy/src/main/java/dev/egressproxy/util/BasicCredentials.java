package dev.egressproxy.util;

import java.nio.charset.StandardCharsets;
import java.util.Base64;

/** HTTP Basic credentials as a client sends them (RFC 7617, UTF-8). */
public final class BasicCredentials {

    private BasicCredentials() {
    }

    /** {@code Basic base64(user:password)}: the value of an {@code Authorization} or {@code Proxy-Authorization} header. */
    public static String header(String user, String password) {
        return "Basic " + Base64.getEncoder().encodeToString((user + ":" + password).getBytes(StandardCharsets.UTF_8));
    }
}
