package dev.egressproxy.check;

import dev.egressproxy.util.BasicCredentials;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import tools.jackson.core.JacksonException;
import tools.jackson.core.JsonParser;
import tools.jackson.core.JsonToken;
import tools.jackson.core.ObjectReadContext;
import tools.jackson.core.TokenStreamLocation;
import tools.jackson.core.json.JsonFactory;

/**
 * The credentials of a containers {@code auth.json} ({@code podman login}, {@code skopeo login}):
 * {@code {"auths": {"registry.redhat.io": {"auth": "base64(user:password)"}}}}. Only the
 * {@code auth} field is read; credential helpers ({@code credHelpers}) are not run and an
 * {@code identitytoken} is not used.
 *
 * <p>Keys are matched as containers/image matches them (containers-auth.json(5)): a key is a
 * registry ({@code quay.io}, {@code localhost:5000}) or a namespace or repository in it
 * ({@code quay.io/org}, {@code quay.io/org/image}), and the most specific key that covers the image
 * wins. A key with {@code http://} or {@code https://} (Docker's old form, such as
 * {@code https://index.docker.io/v1/}) stands for its host only. {@code docker.io},
 * {@code index.docker.io} and {@code registry-1.docker.io} are one registry. An {@code auth} that is
 * empty or decodes to text without a colon means no credentials (as podman reads it); one that is
 * not base64 is an error.
 */
final class AuthFile {

    /** A user name and password from the file. */
    record Login(String user, String password) {
        /** The {@code Authorization} value. */
        String basic() {
            return BasicCredentials.header(user, password);
        }

        @Override
        public String toString() {
            return "Login[user=" + user + "]";
        }
    }

    private static final String DOCKER_HUB = "docker.io";
    private static final AuthFile NONE = new AuthFile(Map.of());

    private final Map<String, Login> auths;

    private AuthFile(Map<String, Login> auths) {
        this.auths = auths;
    }

    /** No file: every request anonymous. */
    static AuthFile none() {
        return NONE;
    }

    static AuthFile read(Path file) throws IOException {
        byte[] bytes;
        try {
            bytes = Files.readAllBytes(file);
        } catch (NoSuchFileException e) {
            throw new IOException("auth file " + file + " does not exist");
        } catch (IOException e) {
            throw new IOException("cannot read auth file " + file + ": " + e.getMessage());
        }
        Map<String, Login> auths = new LinkedHashMap<>();
        try (JsonParser p = new JsonFactory().createParser(ObjectReadContext.empty(), bytes)) {
            if (p.nextToken() != JsonToken.START_OBJECT) {
                throw new IOException("auth file " + file + " is not a JSON object such as {\"auths\": {...}}");
            }
            while (p.nextToken() == JsonToken.PROPERTY_NAME) {
                String name = p.currentName();
                p.nextToken();
                if (!name.equals("auths") || p.currentToken() != JsonToken.START_OBJECT) {
                    p.skipChildren();
                    continue;
                }
                while (p.nextToken() == JsonToken.PROPERTY_NAME) {
                    String key = p.currentName();
                    p.nextToken();
                    if (p.currentToken() != JsonToken.START_OBJECT) {
                        p.skipChildren();
                        continue;
                    }
                    String auth = null;
                    while (p.nextToken() == JsonToken.PROPERTY_NAME) {
                        String field = p.currentName();
                        p.nextToken();
                        if (field.equals("auth") && p.currentToken() == JsonToken.VALUE_STRING) {
                            auth = p.getString();
                        } else {
                            p.skipChildren();
                        }
                    }
                    Login login = decode(file, key, auth);
                    // An entry whose auth says nothing still ends the search at its key, as in podman.
                    auths.put(normalise(key), login);
                }
            }
            // The loops above also end on a token they did not expect; only the object's end is one.
            if (p.currentToken() != JsonToken.END_OBJECT || p.nextToken() != null) {
                throw new IOException("auth file " + file + " is not valid JSON: unexpected "
                        + (p.currentToken() == null ? "end of input" : "'" + p.getString() + "'") + where(p.currentTokenLocation()));
            }
        } catch (JacksonException e) {
            throw new IOException("auth file " + file + " is not valid JSON: " + e.getOriginalMessage() + where(e.getLocation()));
        }
        return new AuthFile(auths);
    }

    private static String where(TokenStreamLocation at) {
        return at == null || at.getLineNr() < 1 ? "" : " (line " + at.getLineNr() + ", column " + at.getColumnNr() + ")";
    }

    private static Login decode(Path file, String key, String auth) throws IOException {
        if (auth == null || auth.isEmpty()) {
            return null;
        }
        String text;
        try {
            text = new String(Base64.getDecoder().decode(auth.trim()), StandardCharsets.UTF_8);
        } catch (IllegalArgumentException e) {
            throw new IOException("auth file " + file + ": the \"auth\" of \"" + key + "\" is not base64 of user:password");
        }
        int colon = text.indexOf(':');
        return colon < 0 ? null : new Login(text.substring(0, colon), text.substring(colon + 1));
    }

    /**
     * A key as containers/image normalises it: {@code https://index.docker.io/v1/} to its host, the
     * registry part in lower case, Docker Hub's names to one.
     */
    static String normalise(String key) {
        String k = key.trim();
        String stripped = k.replaceFirst("(?i)^https?://", "");
        if (!stripped.equals(k)) {
            int slash = stripped.indexOf('/');
            stripped = slash >= 0 ? stripped.substring(0, slash) : stripped;
        }
        int slash = stripped.indexOf('/');
        String registry = (slash >= 0 ? stripped.substring(0, slash) : stripped).toLowerCase(Locale.ROOT);
        String rest = slash >= 0 ? stripped.substring(slash) : "";
        if (registry.equals("index.docker.io") || registry.equals("registry-1.docker.io")) {
            registry = DOCKER_HUB;
        }
        return registry + rest.replaceFirst("/+$", "");
    }

    /**
     * The login for {@code repository} on {@code registry} (as {@link ImageRef} names them), from
     * the most specific key: {@code registry/a/b/c}, {@code registry/a/b}, {@code registry/a},
     * {@code registry}; null when no key covers it or the matching entry holds no credentials.
     */
    Login login(String registry, String repository) {
        String candidate = normalise(registry) + "/" + repository;
        while (true) {
            if (auths.containsKey(candidate)) {
                return auths.get(candidate);
            }
            int slash = candidate.lastIndexOf('/');
            if (slash < 0) {
                return null;
            }
            candidate = candidate.substring(0, slash);
        }
    }
}
