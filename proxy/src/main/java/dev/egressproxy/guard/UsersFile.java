package dev.egressproxy.guard;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The users of {@code auth.basic.users-file}: an htpasswd file, one {@code user:hash} per line
 * (blank lines and lines starting with {@code #} are skipped). Read once per configuration load,
 * immutable afterwards. A line that cannot be used (no colon, an empty or odd user name, a user
 * named twice, a hash scheme not accepted: see {@link PasswordHash}) is an error naming the file
 * and line, and the whole file is refused: a users file is all or nothing, so that a typo never
 * silently locks one user out or lets a weak entry in.
 *
 * <p>Each load gets a new {@link #generation()}, which keys the authenticator's cache of recent
 * successes: after a reload, every client is checked against the new file.
 */
public final class UsersFile {

    /** Larger than any real users file; keeps a wrong path (a log, a device) from being read whole. */
    static final long MAX_BYTES = 16L * 1024 * 1024;

    private static final AtomicLong GENERATIONS = new AtomicLong();

    private final Path path;
    private final Map<String, PasswordHash> users;
    private final PasswordHash dummy;
    private final long generation = GENERATIONS.incrementAndGet();

    private UsersFile(Path path, Map<String, PasswordHash> users) {
        this.path = path;
        this.users = Map.copyOf(users);
        this.dummy = users.values().iterator().next();
    }

    /** The problems of a users file, each naming the file and line. */
    public static final class Invalid extends Exception {
        private final List<String> problems;

        Invalid(List<String> problems) {
            super(String.join("; ", problems));
            this.problems = List.copyOf(problems);
        }

        public List<String> problems() {
            return problems;
        }
    }

    /** Reads and checks {@code path}. */
    public static UsersFile load(Path path, boolean allowMd5Crypt) throws Invalid {
        byte[] bytes;
        try {
            if (!Files.isRegularFile(path)) {
                throw new Invalid(List.of(path + ": does not exist or is not a regular file"));
            }
            if (Files.size(path) > MAX_BYTES) {
                throw new Invalid(List.of(path + ": larger than " + MAX_BYTES / (1024 * 1024)
                        + " MiB; is this really an htpasswd file?"));
            }
            bytes = Files.readAllBytes(path);
        } catch (IOException e) {
            throw new Invalid(List.of(path + ": cannot be read: " + e.getMessage()));
        }
        String text;
        try {
            text = StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(bytes)).toString();
        } catch (CharacterCodingException e) {
            throw new Invalid(List.of(path + ": is not UTF-8 text"));
        }
        return parse(path, text, allowMd5Crypt);
    }

    /** Checks the text of a users file; {@code path} is only named in messages. */
    static UsersFile parse(Path path, String text, boolean allowMd5Crypt) throws Invalid {
        List<String> problems = new ArrayList<>();
        Map<String, PasswordHash> users = new LinkedHashMap<>();
        Map<String, Integer> lineOf = new HashMap<>();
        String[] lines = text.split("\n", -1);
        for (int i = 0; i < lines.length; i++) {
            int lineNo = i + 1;
            String line = lines[i];
            if (line.endsWith("\r")) {
                line = line.substring(0, line.length() - 1);
            }
            line = line.strip();
            if (line.isEmpty() || line.startsWith("#")) {
                continue;
            }
            String where = path + ":" + lineNo;
            int colon = line.indexOf(':');
            if (colon < 0) {
                problems.add(where + ": expected user:hash (no colon on the line)");
                continue;
            }
            String user = line.substring(0, colon);
            String hash = line.substring(colon + 1);
            if (!validUser(user)) {
                problems.add(where + ": the user name is empty or has spaces, control characters or ':'");
                continue;
            }
            Integer earlier = lineOf.putIfAbsent(user, lineNo);
            if (earlier != null) {
                problems.add(where + ": user '" + user + "' is already defined on line " + earlier);
                continue;
            }
            try {
                users.put(user, PasswordHash.parse(hash, allowMd5Crypt));
            } catch (IllegalArgumentException e) {
                problems.add(where + ": the entry of user '" + user + "' " + e.getMessage());
            }
        }
        if (problems.isEmpty() && users.isEmpty()) {
            problems.add(path + ": has no user:hash entries, so every request would be refused; add users with "
                    + "'htpasswd -B " + path + " NAME', or unset auth.basic.users-file");
        }
        if (!problems.isEmpty()) {
            throw new Invalid(problems);
        }
        return new UsersFile(path, users);
    }

    private static boolean validUser(String user) {
        if (user.isEmpty() || user.length() > 255) {
            return false;
        }
        for (int i = 0; i < user.length(); i++) {
            char c = user.charAt(i);
            if (c <= 0x20 || c == 0x7f || c == ':' || Character.isWhitespace(c) || Character.isISOControl(c)) {
                return false;
            }
        }
        return true;
    }

    public Path path() {
        return path;
    }

    /** The hash of {@code user}, or null if the file does not name the user. */
    public PasswordHash hashOf(String user) {
        return users.get(user);
    }

    /**
     * A real entry of this file, checked in place of a user the file does not name, so that an
     * unknown user costs the same work as a wrong password.
     */
    public PasswordHash dummy() {
        return dummy;
    }

    public int size() {
        return users.size();
    }

    /** A number no other load of any users file has; keys the cache of recent successes. */
    public long generation() {
        return generation;
    }

    @Override
    public String toString() {
        return path + " (" + users.size() + " users)";
    }
}
