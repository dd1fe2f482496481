// Transferable: which types may cross a process boundary, decided at compile time.
//
// Who calls what: any code, in any process; everything here happens at compile time.
//
// A type is Transferable when cereal can serialise it and it holds nothing that only means
// something inside one process. Python finds out at run time ("Can't pickle local object");
// here the program does not compile, and the first error line says why:
//
//   error: static assertion failed: cannot send T across processes: it holds a pointer; ...
//
// preceded by "In instantiation of 'struct millrace::ipc::transfer_error::<kind><T>'", which
// names the offending type T, and for a member by "required from 'void Order::serialize(A&)'",
// which names the struct that holds it.
//
// Transferable: arithmetic types, enums, std::string, std::array / vector / deque / list /
// optional / pair / tuple / variant / map / multimap / unordered_map / set / multiset /
// unordered_set / bitset / complex / chrono::duration / chrono::time_point of Transferable
// types, C arrays of them, and classes whose serialize() (or save()/load(), or save_minimal())
// function, a template over the archive, lists only Transferable members.
//
// Not Transferable, each with its own message: references, raw and member pointers, views
// (string_view, span), lambdas, std::function, smart pointers, file handles (FILE*, streams,
// Fd), synchronisation and thread objects (mutexes, threads, atomics, condition variables),
// anything is_process_local<T> marks, and classes with no serialize() function.
//
// How members are checked: C++ cannot list a class's members, but its serialize() does.
// Checking a class instantiates its serialize() with CheckingArchive, whose operator() checks
// every member it is given, recursively. So a member the function does not archive is not
// checked, and is not sent either.
//
// Transferable<T> is never quietly false for a type that fails: evaluating it reports the
// reason as a compile error. A class's members are checked when the compiler instantiates its
// serialize() (at the end of the translation unit), so `static_assert(Transferable<T>)` or
// any use of an API constrained on it is enough to get the member messages.
// is_transferable_shallow_v<T> answers without failing, but cannot see members.
//
// Rules for a class's serialize(): a template over the archive (a function taking only
// cereal::BinaryOutputArchive is not found), listing members with ar(a, b, ...) or
// ar(CEREAL_NVP(a)), bases with cereal::base_class<B>(this).
#pragma once

#include <atomic>
#include <bitset>
#include <chrono>
#include <complex>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <future>
#include <ios>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include <cereal/cereal.hpp>
#include <cereal/types/array.hpp>
#include <cereal/types/base_class.hpp>
#include <cereal/types/bitset.hpp>
#include <cereal/types/chrono.hpp>
#include <cereal/types/complex.hpp>
#include <cereal/types/deque.hpp>
#include <cereal/types/list.hpp>
#include <cereal/types/map.hpp>
#include <cereal/types/optional.hpp>
#include <cereal/types/set.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/tuple.hpp>
#include <cereal/types/unordered_map.hpp>
#include <cereal/types/unordered_set.hpp>
#include <cereal/types/utility.hpp>
#include <cereal/types/variant.hpp>
#include <cereal/types/vector.hpp>

#include "ipc/type_name.hpp"

namespace millrace::ipc {

// Derive from ProcessLocal to mark a type as meaningful only in the process that holds it
// (a socket wrapper, a handle, a cache of addresses).
struct ProcessLocal {};

// A file descriptor number. Typed so that it cannot travel by mistake: the same number in
// another process is another file, or none.
struct Fd {
  int value = -1;
};

// True for types that must never leave their process. Specialise it for your own types:
//   template <> struct millrace::ipc::is_process_local<MySocket> : std::true_type {};
template <class T>
struct is_process_local;

namespace detail {

template <class T, template <class...> class Template>
inline constexpr bool is_specialization_v = false;
template <template <class...> class Template, class... Args>
inline constexpr bool is_specialization_v<Template<Args...>, Template> = true;

template <class T>
inline constexpr bool always_false_v = false;

template <class T>
struct FirstTemplateArgument;
template <template <class...> class Template, class First, class... Rest>
struct FirstTemplateArgument<Template<First, Rest...>> {
  using type = First;
};

template <class T>
inline constexpr bool is_file_handle_v =
    std::is_same_v<T, std::FILE> || std::is_same_v<T, Fd> || std::is_base_of_v<std::ios_base, T> ||
    is_specialization_v<T, std::basic_streambuf> || is_specialization_v<T, std::basic_filebuf>;

template <class T>
inline constexpr bool is_atomic_v = false;
template <class T>
inline constexpr bool is_atomic_v<std::atomic<T>> = true;

template <class T>
inline constexpr bool is_sync_primitive_v =
    std::is_same_v<T, std::mutex> || std::is_same_v<T, std::recursive_mutex> ||
    std::is_same_v<T, std::timed_mutex> || std::is_same_v<T, std::recursive_timed_mutex> ||
    std::is_same_v<T, std::shared_mutex> || std::is_same_v<T, std::shared_timed_mutex> ||
    std::is_same_v<T, std::condition_variable> || std::is_same_v<T, std::condition_variable_any> ||
    std::is_same_v<T, std::thread> || std::is_same_v<T, std::jthread> ||
    std::is_same_v<T, std::atomic_flag> || std::is_same_v<T, std::once_flag> || is_atomic_v<T> ||
    is_specialization_v<T, std::promise> || is_specialization_v<T, std::future> ||
    is_specialization_v<T, std::shared_future> || is_specialization_v<T, std::unique_lock> ||
    is_specialization_v<T, std::lock_guard> || is_specialization_v<T, std::shared_lock>;

}  // namespace detail

template <class T>
struct is_process_local
    : std::bool_constant<std::is_base_of_v<ProcessLocal, T> || detail::is_file_handle_v<T> ||
                         detail::is_sync_primitive_v<T>> {};
template <class T>
inline constexpr bool is_process_local_v = is_process_local<T>::value;

// One struct per reason a type cannot cross; instantiating one fails with its message. The
// compiler names the struct and T in the line above the message.
namespace transfer_error {
template <class T>
struct is_a_reference {
  static_assert(detail::always_false_v<T>,
                "cannot send T across processes: it is a reference into this process's memory; "
                "send the value itself");
};
template <class T>
struct holds_a_pointer {
  static_assert(detail::always_false_v<T>,
                "cannot send T across processes: it holds a pointer; send the value or an id "
                "instead");
};
template <class T>
struct is_a_view {
  static_assert(detail::always_false_v<T>,
                "cannot send T across processes: it is a view (std::string_view, std::span) of "
                "this process's memory, i.e. a pointer; send a std::string or std::vector copy "
                "instead");
};
template <class T>
struct is_a_lambda {
  static_assert(detail::always_false_v<T>,
                "cannot send T across processes: it is a lambda (a local closure object) whose "
                "code and captures exist only in this process; send the captured data and pick "
                "the behaviour on the receiving side");
};
template <class T>
struct is_a_std_function {
  static_assert(detail::always_false_v<T>,
                "cannot send T across processes: std::function holds code and captures of this "
                "process; send a name or an enum that selects the function on the receiving "
                "side");
};
template <class T>
struct is_a_smart_pointer {
  static_assert(detail::always_false_v<T>,
                "cannot send T across processes: a smart pointer (unique_ptr, shared_ptr, "
                "weak_ptr) holds an address in this process; send the pointed-to value, or a "
                "std::optional of it, instead");
};
template <class T>
struct is_a_file_handle {
  static_assert(detail::always_false_v<T>,
                "cannot send T across processes: it is a file descriptor or file handle (Fd, "
                "FILE*, stream) that is only valid in this process; send the path and open it "
                "there, or let the launcher pass the descriptor");
};
template <class T>
struct is_a_sync_primitive {
  static_assert(detail::always_false_v<T>,
                "cannot send T across processes: it is a mutex, lock, thread, condition variable, "
                "future or atomic of this process; send a plain value, or share state through "
                "ipc::Value / ipc::RobustMutex in shared memory");
};
template <class T>
struct marked_process_local {
  static_assert(detail::always_false_v<T>,
                "cannot send T across processes: is_process_local<T> marks it as meaningful only "
                "in this process; send the data that identifies it instead");
};
template <class T>
struct is_a_container_of_empty_elements {
  static_assert(detail::always_false_v<T>,
                "cannot send T across processes: its elements are empty and take no bytes, so the "
                "receiver could not bound its length against the message size; send the element "
                "count instead");
};
template <class T>
struct has_no_serialize_function {
  static_assert(detail::always_false_v<T>,
                "cannot send T across processes: it has no serialize() function: add "
                "template <class A> void serialize(A& ar) { ar(member1, member2); } listing its "
                "members (a template over the archive, so every archive finds it)");
};
}  // namespace transfer_error

namespace detail {

enum class TransferProblem {
  kNone,
  kReference,
  kPointer,
  kView,
  kLambda,
  kFunction,
  kSmartPointer,
  kFileHandle,
  kSyncPrimitive,
  kProcessLocal,
  kEmptyElements,
  kNoSerialize,
};

// The archive that checks members: a class's serialize() instantiated with it calls
// operator() with each member, which checks that member's type. It never runs.
class CheckingArchive {
 public:
  using is_loading = std::false_type;
  using is_saving = std::true_type;

  // Deduced return types make the compiler instantiate these bodies as soon as a serialize()
  // body that calls them is instantiated, so the member's message comes before any other.
  template <class... Ts>
  auto& operator()(Ts&&... members);
  template <class T>
  auto& operator&(T&& member) {
    return (*this)(std::forward<T>(member));
  }
  template <class T>
  auto& operator<<(T&& member) {
    return (*this)(std::forward<T>(member));
  }
};

template <class T>
constexpr bool is_lambda() {
  if constexpr (!std::is_class_v<T>) {
    return false;
  } else {
    const std::string_view name = ipc::compiler_type_name<T>();
    // gcc spells closures "f()::<lambda(int)>", clang "(lambda at file.cpp:3:7)".
    return name.find("<lambda") != std::string_view::npos ||
           name.find("(lambda at ") != std::string_view::npos;
  }
}

// cereal's own wrappers that a serialize() may pass to the archive.
template <class T>
inline constexpr bool is_cereal_wrapper_v =
    is_specialization_v<T, cereal::NameValuePair> || is_specialization_v<T, cereal::SizeTag> ||
    is_specialization_v<T, cereal::BinaryData> || is_specialization_v<T, cereal::base_class> ||
    is_specialization_v<T, cereal::virtual_base_class> || is_specialization_v<T, cereal::MapItem>;

template <class T>
inline constexpr bool is_smart_pointer_v =
    is_specialization_v<T, std::unique_ptr> || is_specialization_v<T, std::shared_ptr> ||
    is_specialization_v<T, std::weak_ptr>;

template <class T>
inline constexpr bool is_view_v = is_specialization_v<T, std::basic_string_view>;
template <class E, std::size_t N>
inline constexpr bool is_view_v<std::span<E, N>> = true;

template <class T>
inline constexpr bool has_serialize_function_v =
    cereal::traits::has_member_serialize<T, CheckingArchive>::value ||
    cereal::traits::has_member_versioned_serialize<T, CheckingArchive>::value ||
    cereal::traits::has_non_member_serialize<T, CheckingArchive>::value ||
    cereal::traits::has_non_member_versioned_serialize<T, CheckingArchive>::value ||
    cereal::traits::has_member_save<T, CheckingArchive>::value ||
    cereal::traits::has_member_versioned_save<T, CheckingArchive>::value ||
    cereal::traits::has_non_member_save<T, CheckingArchive>::value ||
    cereal::traits::has_non_member_versioned_save<T, CheckingArchive>::value ||
    cereal::traits::has_member_save_minimal<T, CheckingArchive>::value ||
    cereal::traits::has_member_versioned_save_minimal<T, CheckingArchive>::value ||
    cereal::traits::has_non_member_save_minimal<T, CheckingArchive>::value ||
    cereal::traits::has_non_member_versioned_save_minimal<T, CheckingArchive>::value;

// Standard types whose transferability is that of their template arguments.
template <class T>
struct StdComposite : std::false_type {};
template <class C, class Tr, class A>
struct StdComposite<std::basic_string<C, Tr, A>> : std::true_type {
  using Elements = std::tuple<C>;
};
template <class E, std::size_t N>
struct StdComposite<std::array<E, N>> : std::true_type {
  using Elements = std::tuple<E>;
};
template <class E, std::size_t N>
struct StdComposite<E[N]> : std::true_type {
  using Elements = std::tuple<E>;
};
template <class E, class A>
struct StdComposite<std::vector<E, A>> : std::true_type {
  using Elements = std::tuple<E>;
};
template <class E, class A>
struct StdComposite<std::deque<E, A>> : std::true_type {
  using Elements = std::tuple<E>;
};
template <class E, class A>
struct StdComposite<std::list<E, A>> : std::true_type {
  using Elements = std::tuple<E>;
};
template <class E>
struct StdComposite<std::optional<E>> : std::true_type {
  using Elements = std::tuple<E>;
};
template <class E>
struct StdComposite<std::complex<E>> : std::true_type {
  using Elements = std::tuple<E>;
};
template <class A, class B>
struct StdComposite<std::pair<A, B>> : std::true_type {
  using Elements = std::tuple<A, B>;
};
template <class... Es>
struct StdComposite<std::tuple<Es...>> : std::true_type {
  using Elements = std::tuple<Es...>;
};
template <class... Es>
struct StdComposite<std::variant<Es...>> : std::true_type {
  using Elements = std::tuple<Es...>;
};
template <class K, class V, class C, class A>
struct StdComposite<std::map<K, V, C, A>> : std::true_type {
  using Elements = std::tuple<K, V>;
};
template <class K, class V, class C, class A>
struct StdComposite<std::multimap<K, V, C, A>> : std::true_type {
  using Elements = std::tuple<K, V>;
};
template <class K, class V, class H, class Eq, class A>
struct StdComposite<std::unordered_map<K, V, H, Eq, A>> : std::true_type {
  using Elements = std::tuple<K, V>;
};
template <class K, class C, class A>
struct StdComposite<std::set<K, C, A>> : std::true_type {
  using Elements = std::tuple<K>;
};
template <class K, class C, class A>
struct StdComposite<std::multiset<K, C, A>> : std::true_type {
  using Elements = std::tuple<K>;
};
template <class K, class H, class Eq, class A>
struct StdComposite<std::unordered_set<K, H, Eq, A>> : std::true_type {
  using Elements = std::tuple<K>;
};
template <class R, class P>
struct StdComposite<std::chrono::duration<R, P>> : std::true_type {
  using Elements = std::tuple<R>;
};
template <class C, class D>
struct StdComposite<std::chrono::time_point<C, D>> : std::true_type {
  using Elements = std::tuple<D>;
};
template <std::size_t N>
struct StdComposite<std::bitset<N>> : std::true_type {
  using Elements = std::tuple<>;
};
template <>
struct StdComposite<std::monostate> : std::true_type {
  using Elements = std::tuple<>;
};

// Containers that store a length: their elements must take bytes (see ipc/codec.hpp).
template <class T>
inline constexpr bool is_sized_container_v =
    is_specialization_v<T, std::vector> || is_specialization_v<T, std::deque> ||
    is_specialization_v<T, std::list> || is_specialization_v<T, std::set> ||
    is_specialization_v<T, std::multiset> || is_specialization_v<T, std::unordered_set> ||
    is_specialization_v<T, std::map> || is_specialization_v<T, std::multimap> ||
    is_specialization_v<T, std::unordered_map>;

template <class Tuple>
inline constexpr bool all_empty_v = false;
template <class... Es>
inline constexpr bool all_empty_v<std::tuple<Es...>> = (std::is_empty_v<Es> && ...);

template <class T>
constexpr bool is_container_of_empty_elements() {
  if constexpr (is_sized_container_v<T>) {
    return all_empty_v<typename StdComposite<T>::Elements>;
  } else {
    return false;
  }
}

// What is wrong with T itself, looking into standard containers but not into classes.
template <class T>
constexpr TransferProblem shallow_problem();

template <class Tuple>
struct ElementsProblem;
template <class... Es>
struct ElementsProblem<std::tuple<Es...>> {
  static constexpr TransferProblem value = [] {
    TransferProblem found = TransferProblem::kNone;
    ((found == TransferProblem::kNone ? (found = shallow_problem<Es>(), 0) : 0), ...);
    return found;
  }();
};

template <class T>
constexpr TransferProblem shallow_problem() {
  if constexpr (std::is_reference_v<T> ||
                is_specialization_v<std::remove_cv_t<T>, std::reference_wrapper>) {
    return TransferProblem::kReference;
  } else {
    using U = std::remove_cv_t<T>;
    if constexpr (std::is_pointer_v<U> &&
                  is_process_local_v<std::remove_cv_t<std::remove_pointer_t<U>>>) {
      return TransferProblem::kFileHandle;  // FILE* and the like
    } else if constexpr (std::is_pointer_v<U> || std::is_member_pointer_v<U> ||
                         std::is_null_pointer_v<U>) {
      return TransferProblem::kPointer;
    } else if constexpr (is_view_v<U>) {
      return TransferProblem::kView;
    } else if constexpr (is_specialization_v<U, std::function>) {
      return TransferProblem::kFunction;
    } else if constexpr (is_smart_pointer_v<U>) {
      return TransferProblem::kSmartPointer;
    } else if constexpr (is_lambda<U>()) {
      return TransferProblem::kLambda;
    } else if constexpr (is_file_handle_v<U>) {
      return TransferProblem::kFileHandle;
    } else if constexpr (is_sync_primitive_v<U>) {
      return TransferProblem::kSyncPrimitive;
    } else if constexpr (is_process_local_v<U>) {
      return TransferProblem::kProcessLocal;
    } else if constexpr (std::is_arithmetic_v<U> || std::is_enum_v<U> || is_cereal_wrapper_v<U>) {
      return TransferProblem::kNone;
    } else if constexpr (is_container_of_empty_elements<U>()) {
      return TransferProblem::kEmptyElements;
    } else if constexpr (StdComposite<U>::value) {
      return ElementsProblem<typename StdComposite<U>::Elements>::value;
    } else if constexpr (std::is_class_v<U> && has_serialize_function_v<U>) {
      return TransferProblem::kNone;
    } else {
      return TransferProblem::kNoSerialize;
    }
  }
}

template <class T>
constexpr bool require_transferable();

// Instantiates T's serialization function with CheckingArchive, which checks each member.
// The deduced return type makes the compiler instantiate this body at once.
template <class T>
auto check_members(T* object) {
  CheckingArchive ar;
  if constexpr (cereal::traits::has_member_serialize<T, CheckingArchive>::value) {
    cereal::access::member_serialize(ar, *object);
  } else if constexpr (cereal::traits::has_member_versioned_serialize<T, CheckingArchive>::value) {
    cereal::access::member_serialize(ar, *object, std::uint32_t{0});
  } else if constexpr (cereal::traits::has_non_member_serialize<T, CheckingArchive>::value) {
    using cereal::CEREAL_SERIALIZE_FUNCTION_NAME;
    CEREAL_SERIALIZE_FUNCTION_NAME(ar, *object);
  } else if constexpr (cereal::traits::has_non_member_versioned_serialize<T,
                                                                           CheckingArchive>::value) {
    using cereal::CEREAL_SERIALIZE_FUNCTION_NAME;
    CEREAL_SERIALIZE_FUNCTION_NAME(ar, *object, std::uint32_t{0});
  } else if constexpr (cereal::traits::has_member_save<T, CheckingArchive>::value) {
    cereal::access::member_save(ar, static_cast<const T&>(*object));
  } else if constexpr (cereal::traits::has_member_versioned_save<T, CheckingArchive>::value) {
    cereal::access::member_save(ar, static_cast<const T&>(*object), std::uint32_t{0});
  } else if constexpr (cereal::traits::has_non_member_save<T, CheckingArchive>::value) {
    using cereal::CEREAL_SAVE_FUNCTION_NAME;
    CEREAL_SAVE_FUNCTION_NAME(ar, static_cast<const T&>(*object));
  } else if constexpr (cereal::traits::has_non_member_versioned_save<T, CheckingArchive>::value) {
    using cereal::CEREAL_SAVE_FUNCTION_NAME;
    CEREAL_SAVE_FUNCTION_NAME(ar, static_cast<const T&>(*object), std::uint32_t{0});
  } else if constexpr (cereal::traits::has_member_save_minimal<T, CheckingArchive>::value) {
    using Minimal = decltype(cereal::access::member_save_minimal(
        static_cast<const CheckingArchive&>(ar), static_cast<const T&>(*object)));
    constexpr bool checked = require_transferable<std::remove_cvref_t<Minimal>>();
    static_cast<void>(checked);
  } else if constexpr (cereal::traits::has_member_versioned_save_minimal<T,
                                                                           CheckingArchive>::value) {
    using Minimal = decltype(cereal::access::member_save_minimal(
        static_cast<const CheckingArchive&>(ar), static_cast<const T&>(*object), 0u));
    constexpr bool checked = require_transferable<std::remove_cvref_t<Minimal>>();
    static_cast<void>(checked);
  } else if constexpr (cereal::traits::has_non_member_save_minimal<T, CheckingArchive>::value) {
    using cereal::CEREAL_SAVE_MINIMAL_FUNCTION_NAME;
    using Minimal = decltype(CEREAL_SAVE_MINIMAL_FUNCTION_NAME(
        static_cast<const CheckingArchive&>(ar), static_cast<const T&>(*object)));
    constexpr bool checked = require_transferable<std::remove_cvref_t<Minimal>>();
    static_cast<void>(checked);
  } else {
    using cereal::CEREAL_SAVE_MINIMAL_FUNCTION_NAME;
    using Minimal = decltype(CEREAL_SAVE_MINIMAL_FUNCTION_NAME(
        static_cast<const CheckingArchive&>(ar), static_cast<const T&>(*object), 0u));
    constexpr bool checked = require_transferable<std::remove_cvref_t<Minimal>>();
    static_cast<void>(checked);
  }
  return true;
}

template <class Tuple>
struct RequireElements;
template <class... Es>
struct RequireElements<std::tuple<Es...>> {
  static constexpr bool check() { return (require_transferable<Es>() && ...); }
};

// Checks T and reports the first problem as a compile error with its message. Returns true
// for every T it accepts; for the others the program is ill-formed.
template <class T>
constexpr bool require_transferable() {
  constexpr TransferProblem problem = shallow_problem<T>();
  using U = std::remove_cvref_t<T>;
  if constexpr (std::is_reference_v<T> || is_specialization_v<U, std::reference_wrapper>) {
    return sizeof(transfer_error::is_a_reference<T>) == 0;
  } else if constexpr (std::is_pointer_v<U> && problem == TransferProblem::kFileHandle) {
    return sizeof(transfer_error::is_a_file_handle<U>) == 0;
  } else if constexpr (is_cereal_wrapper_v<U>) {
    if constexpr (is_specialization_v<U, cereal::BinaryData>) {
      return true;  // raw bytes the class copies on purpose (its pointer is not sent)
    } else if constexpr (is_specialization_v<U, cereal::SizeTag>) {
      return true;
    } else if constexpr (is_specialization_v<U, cereal::NameValuePair>) {
      return require_transferable<std::remove_reference_t<decltype(std::declval<U&>().value)>>();
    } else if constexpr (is_specialization_v<U, cereal::MapItem>) {
      return require_transferable<std::remove_reference_t<decltype(std::declval<U&>().key)>>() &&
             require_transferable<std::remove_reference_t<decltype(std::declval<U&>().value)>>();
    } else {
      return require_transferable<typename FirstTemplateArgument<U>::type>();  // base_class<B>
    }
  } else if constexpr (problem == TransferProblem::kEmptyElements) {
    return sizeof(transfer_error::is_a_container_of_empty_elements<U>) == 0;
  } else if constexpr (StdComposite<U>::value) {
    return RequireElements<typename StdComposite<U>::Elements>::check();
  } else if constexpr (problem == TransferProblem::kPointer) {
    return sizeof(transfer_error::holds_a_pointer<U>) == 0;
  } else if constexpr (problem == TransferProblem::kView) {
    return sizeof(transfer_error::is_a_view<U>) == 0;
  } else if constexpr (problem == TransferProblem::kFunction) {
    return sizeof(transfer_error::is_a_std_function<U>) == 0;
  } else if constexpr (problem == TransferProblem::kSmartPointer) {
    return sizeof(transfer_error::is_a_smart_pointer<U>) == 0;
  } else if constexpr (problem == TransferProblem::kLambda) {
    return sizeof(transfer_error::is_a_lambda<U>) == 0;
  } else if constexpr (problem == TransferProblem::kFileHandle) {
    return sizeof(transfer_error::is_a_file_handle<U>) == 0;
  } else if constexpr (problem == TransferProblem::kSyncPrimitive) {
    return sizeof(transfer_error::is_a_sync_primitive<U>) == 0;
  } else if constexpr (problem == TransferProblem::kProcessLocal) {
    return sizeof(transfer_error::marked_process_local<U>) == 0;
  } else if constexpr (problem == TransferProblem::kNoSerialize) {
    return sizeof(transfer_error::has_no_serialize_function<U>) == 0;
  } else if constexpr (std::is_class_v<U>) {
    using Checked = decltype(check_members<U>(nullptr));
    return std::is_same_v<Checked, bool>;
  } else {
    return true;
  }
}

template <class... Ts>
auto& CheckingArchive::operator()(Ts&&... members) {
  static_cast<void>(sizeof...(members));
  constexpr bool checked = (require_transferable<std::remove_cvref_t<Ts>>() && ...);
  static_cast<void>(checked);
  return *this;
}

}  // namespace detail

// T can cross a process boundary (see the header comment). Evaluating it for a type that
// cannot fails the compilation with the reason.
template <class T>
concept Transferable = detail::require_transferable<T>();

// Answers without failing; sees standard containers but not the members of classes.
template <class T>
inline constexpr bool is_transferable_shallow_v =
    detail::shallow_problem<T>() == detail::TransferProblem::kNone;

}  // namespace millrace::ipc
