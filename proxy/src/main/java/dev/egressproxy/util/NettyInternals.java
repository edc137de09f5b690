package dev.egressproxy.util;

import io.netty.util.Version;
import java.lang.reflect.AccessibleObject;
import java.lang.reflect.Field;
import java.lang.reflect.Method;
import java.util.Arrays;
import java.util.stream.Collectors;

/**
 * Looks up private members of Netty's epoll transport by name, for the two workarounds that need
 * them ({@code SpliceRelay}, {@link EpollInterest}). A private member is not an API: a Netty
 * upgrade may rename or retype it. A failed lookup throws {@link Missing}, whose message names the
 * member and the Netty version; its user then turns its workaround off and says so at start-up,
 * and {@code NettyInternalsTest} fails the build on the Netty version in the pom.
 */
public final class NettyInternals {

    private NettyInternals() {
    }

    /** A private member of Netty that is not there, or not of the shape the proxy expects. */
    public static final class Missing extends Exception {
        Missing(String message, Throwable cause) {
            super(message, cause, false, false);
        }
    }

    /** The class {@code name}, not initialised. */
    public static Class<?> type(String name) throws Missing {
        try {
            return Class.forName(name, false, NettyInternals.class.getClassLoader());
        } catch (ClassNotFoundException | LinkageError e) {
            throw new Missing("class " + name + " not found on " + nettyVersion(), e);
        }
    }

    /** {@code owner}'s own field {@code name}, of a type assignable to {@code type}, made accessible. */
    public static Field field(Class<?> owner, String name, Class<?> type) throws Missing {
        String member = owner.getName() + "#" + name;
        Field f;
        try {
            f = owner.getDeclaredField(name);
        } catch (NoSuchFieldException | LinkageError e) {
            throw new Missing(member + " not found on " + nettyVersion(), e);
        }
        if (!type.isAssignableFrom(f.getType())) {
            throw new Missing(member + " is a " + f.getType().getName() + ", not a " + type.getName() + ", on "
                    + nettyVersion(), null);
        }
        return accessible(f, member);
    }

    /** {@code owner}'s own method {@code name} taking {@code parameters}, made accessible. */
    public static Method method(Class<?> owner, String name, Class<?>... parameters) throws Missing {
        String member = owner.getName() + "#" + name + Arrays.stream(parameters).map(Class::getName)
                .collect(Collectors.joining(", ", "(", ")"));
        try {
            return accessible(owner.getDeclaredMethod(name, parameters), member);
        } catch (NoSuchMethodException | LinkageError e) {
            throw new Missing(member + " not found on " + nettyVersion(), e);
        }
    }

    private static <T extends AccessibleObject> T accessible(T member, String name) throws Missing {
        try {
            member.setAccessible(true);
            return member;
        } catch (RuntimeException e) {
            // InaccessibleObjectException (Netty on the module path) or a security manager.
            throw new Missing(name + " cannot be made accessible on " + nettyVersion() + ": " + e, e);
        }
    }

    /** "Netty 4.2.18.Final", the version of the epoll transport on the class path. */
    public static String nettyVersion() {
        Version v = Version.identify(NettyInternals.class.getClassLoader()).get("netty-transport-classes-epoll");
        return "Netty " + (v == null ? "(version unknown)" : v.artifactVersion());
    }
}
